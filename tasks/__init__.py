"""The Celery side of warehouse: the app built from the ini file, and the three run tasks.

``celery -A tasks worker`` finds the app in ``tasks.celery`` (Celery looks there when the package has
no ``app`` attribute), which builds it from the ini file named by ``WAREHOUSE_INI``. Importing this
package or ``tasks.app`` has no side effects, so the web app can build its own Celery app to send tasks.
"""

from setuptools import find_packages, setup

requires = [
    "alembic>=1.13",
    # A fraction of a second of memory for the run status every client polls (warehouse/run_status.py).
    "cachetools>=5.3",
    "celery[redis]>=5.5,<6",
    # Schedules' five-field cron expressions, their next tick in a time zone (warehouse/schedules/).
    "croniter>=6.0",
    # Bulk uploads: the document's row schemas compiled once, fast enough for 100,000 rows a request.
    "fastjsonschema>=2.19",
    # production.ini's web server: holds thousands of keep-alive pollers (warehouse/granian_server.py).
    "granian>=2.5,<3",
    "plaster_pastedeploy>=1.0",
    # GET /metrics and each worker node's metrics port, every prefork child added up (warehouse/metrics/).
    "prometheus_client>=0.20",
    "psycopg[binary]>=3.1",
    "pyramid>=2.0",
    # The pages people watch (warehouse/pages/): Jinja2 templates, as the Pyramid starter renders them.
    "pyramid_jinja2>=2.10",
    "pyramid_openapi3>=0.19",
    "pyramid_retry>=2.1",
    "pyramid_tm>=2.5",
    "PyYAML>=6",
    # Swagger UI's files, for the API explorer at /api/docs (served by the app, no CDN).
    "swagger-ui-bundle>=1.1",
    "tqdm>=4.60",
    "redis>=5",
    "SQLAlchemy>=2.0,<2.2",
    # production.ini's JSON log lines, with the run, chunk and request they belong to (warehouse/logs/).
    "structlog>=24.1",
    # Webhook deliveries signed as the Standard Webhooks specification says (warehouse/webhooks/).
    "standardwebhooks>=1.0",
    "urllib3>=2",
    "transaction>=4",
    # development.ini's web server, and the carrier stub's.
    "waitress>=3",
    "zope.sqlalchemy>=3",
]

# Flower, the web UI over the workers' tasks (`make flower`; the image has it).
flower_require = ["flower>=2.0"]

tests_require = [
    *flower_require,  # tests/integration/test_flower_on_workers.py starts it on a real worker
    # Drives the carrier client through in-process transports (tests/httpx_transport.py).
    "httpx>=0.27",
    # deploy/kubernetes/ checked against the Kubernetes API's schemas, which it bundles (offline).
    "kubernetes-validate>=1.33",
    # Drives Debian's chromium (/usr/bin/chromium) in the browser tests (tests/browser/); never
    # downloads a browser of its own.
    "playwright>=1.50",
    "pytest>=8",
    "pytest-timeout>=2.3",
    # Fuzzes the live app against its own OpenAPI document (tests/functional/test_fuzz_api.py);
    # written against 4.32 (failure codes such as ST101); its Python API changes across majors.
    "schemathesis>=4.32,<5",
    "WebTest>=3",
]

bench_require = [
    # The plot of run time against products in docs/benchmarks.md (bench/plot.py).
    "matplotlib>=3.8",
    # The carrier limiter the service used before warehouse/carrier/slots.py, measured against it by
    # bench/limiter.py.
    "py-redis-semaphore>=0.2,<0.3",
]

setup(
    name="warehouse",
    version="0.1.0",
    description="Batch jobs over a warehouse's products and shipments, fanned out to Celery workers",
    packages=find_packages(exclude=["tests", "tests.*"]),
    include_package_data=True,
    package_data={"warehouse": ["openapi.yaml", "templates/*", "templates/pages/*", "static/*", "static/vendor/*", "migrations/*.py", "migrations/script.py.mako", "migrations/versions/*.py"]},
    zip_safe=False,
    python_requires=">=3.11",
    install_requires=requires,
    extras_require={"testing": tests_require, "bench": bench_require, "flower": flower_require},
    entry_points={
        "paste.app_factory": ["main = warehouse:main"],
        "paste.server_runner": ["granian = warehouse.granian_server:serve"],
        # development.ini's result backend, by its URL embedded:// (tasks/embedded_backend.py).
        "celery.result_backends": ["embedded = tasks.embedded_backend:EmbeddedResultBackend"],
        "console_scripts": [
            "initialize_warehouse_db = warehouse.scripts.initialize_db:main",
            "warehouse-seed = warehouse.scripts.seed:main",
            "warehouse-run = warehouse.scripts.run:main",
            "warehouse-schedule = warehouse.scripts.schedule:main",
            "warehouse-webhooks = warehouse.scripts.webhooks:main",
            "warehouse-reconcile = warehouse.scripts.reconcile:main",
            "warehouse-purge = warehouse.scripts.purge:main",
            "warehouse-queue-depth = warehouse.scripts.queue_depth:main",
            "warehouse-carrier-stub = warehouse.scripts.carrier_stub:main",
        ],
    },
)

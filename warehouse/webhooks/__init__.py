"""Webhooks: subscriptions to runs' changes of status, and their delivery, signed as the Standard
Webhooks specification says.

- ``outbox``: the event and its deliveries, written by the ledger in the transaction that changes a
  run's status (so none is lost between the change and its sending);
- ``addresses``: which URLs may be called (public http and https addresses only), resolved once more
  at every send;
- ``sending``: one signed POST to one checked address;
- ``delivering``: claiming a due delivery under a lease, sending it, recording the attempt and what
  comes next (delivered, tried again later, failed);
- ``subscriptions``: subscribing, listing, deleting, the delivery log and a retry, for the API and
  ``warehouse-webhooks`` alike;
- ``config``: the settings.

Nothing is imported here: the ledger imports ``outbox`` while ``delivering`` imports the ledger.
"""

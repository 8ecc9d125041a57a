"""The webhooks API: subscriptions, their delivery log, and a retry; what it does is in
warehouse/webhooks/."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from tasks.webhooks import send_deliveries

from ..dispatch import after_commit
from ..pagination import decode_cursor, encode_cursor
from ..security import OPERATE, VIEW
from ..webhooks import subscriptions


def _path_id(request: Request, name: str = "id") -> int:
    return int(request.openapi_validated.parameters.path[name])


@view_config(route_name="api.webhooks", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def create_webhook(request: Request) -> dict[str, Any]:
    subscription, code = subscriptions.create_subscription(
        request.dbsession, request.openapi_validated.body, request.registry.settings
    )
    request.response.status_int = 201
    request.response.location = request.route_path("api.webhook.deliveries", id=subscription.id)
    # The only answer that shows the secret: it is never shown again.
    return subscriptions.subscription_json(subscription, code, with_secret=True)


@view_config(route_name="api.webhooks", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_webhooks(request: Request) -> dict[str, Any]:
    listed = subscriptions.list_subscriptions(request.dbsession)
    return {"webhooks": [subscriptions.subscription_json(subscription, code) for subscription, code in listed]}


@view_config(route_name="api.webhook", request_method="DELETE", permission=OPERATE, openapi=True)
def delete_webhook(request: Request) -> Response:
    subscriptions.delete_subscription(request.dbsession, _path_id(request))
    return Response(status=204)


@view_config(route_name="api.webhook.deliveries", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_deliveries(request: Request) -> dict[str, Any]:
    subscription = subscriptions.subscription_or_404(request.dbsession, _path_id(request))
    query = request.openapi_validated.parameters.query
    page, more = subscriptions.deliveries_page(
        request.dbsession, subscription.id, int(query.get("limit", 50)), decode_cursor(query.get("cursor"))
    )
    return {
        "deliveries": [subscriptions.delivery_json(*row) for row in page],
        "next_cursor": encode_cursor(page[-1][0].id) if more else None,
    }


@view_config(route_name="api.webhook.delivery.retry", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def retry_delivery(request: Request) -> dict[str, Any]:
    delivery = subscriptions.retry_delivery(request.dbsession, _path_id(request), _path_id(request, "delivery_id"))
    delivery_id = delivery.id
    after_commit(request, lambda app: send_deliveries(app, [delivery_id]), f"webhook delivery {delivery_id}")
    request.response.status_int = 202
    return subscriptions.delivery_json(*subscriptions.delivery_with_log(request.dbsession, delivery))

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("api.warehouses", "/api/warehouses")
    config.add_route("api.warehouse", "/api/warehouses/{code}")
    config.add_route("api.warehouse.products", "/api/warehouses/{code}/products")
    config.add_route("api.warehouse.runs", "/api/warehouses/{code}/runs")
    config.add_route("api.run", "/api/runs/{id}")

from tests.server import Client


async def test_health_is_live(client: Client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert response.json == {"status": "ok"}


async def test_unknown_route_is_json_404(client: Client) -> None:
    response = await client.get("/no/such/route")
    assert response.status == 404
    assert response.json["error"]["status"] == 404

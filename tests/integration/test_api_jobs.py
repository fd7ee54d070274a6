"""Jobs over HTTP: CRUD, ownership, validation, filters, pagination and statistics."""

from __future__ import annotations

from typing import Any

from models.job import Job, JobTag
from tests.integration.api_support import assert_error, register
from tests.server import Client

JOBS: list[dict[str, Any]] = [
    {"title": "Senior Python Developer", "company": "Acme", "location": "Berlin",
     "remote": True, "salary_min": 70_000, "salary_max": 90_000, "tags": ["python", "sql"]},
    {"title": "Go Engineer", "company": "Globex", "location": "berlin", "remote": False,
     "salary_min": 60_000, "salary_max": 80_000, "tags": ["go"]},
    {"title": "Data Engineer", "company": "Python Software Co", "location": "Paris",
     "remote": True, "tags": ["python", "data"]},
    {"title": "100% Remote SRE_lead", "company": "Initech", "location": "London",
     "remote": True, "salary_min": 50_000, "tags": ["sre"]},
    {"title": "Frontend Developer", "company": "Hooli", "location": "Berlin", "remote": False,
     "salary_max": 120_000},
]


async def _post_jobs(client: Client, auth: dict[str, str]) -> list[dict[str, Any]]:
    created = []
    for body in JOBS:
        response = await client.post("/api/jobs", json=body, headers=auth)
        assert response.status == 201, response.text
        created.append(response.json)
    return created


async def _titles(client: Client, **params: Any) -> list[str]:
    response = await client.get("/api/jobs", params=params)
    assert response.status == 200, response.text
    return [item["title"] for item in response.json["items"]]


async def test_job_lifecycle(client: Client) -> None:
    owner, auth = await register(client, "acme")
    created = await client.post("/api/jobs", json={
        "title": "Backend Engineer", "company": "Acme", "location": "Berlin", "remote": True,
        "salary_min": 50_000, "salary_max": 70_000, "tags": ["Python", " python ", "SQL"],
        "description": "Build APIs."}, headers=auth)
    assert created.status == 201, created.text
    job = created.json
    assert job["tags"] == ["python", "sql"]
    assert job["owner"] == {"id": owner["id"], "username": "acme"}
    assert (await client.get(f"/api/jobs/{job['id']}")).json == job

    edited = await client.patch(f"/api/jobs/{job['id']}", json={
        "title": "Staff Backend Engineer", "salary_max": None, "tags": ["go"],
        "location": "Paris"}, headers=auth)
    assert edited.status == 200, edited.text
    assert edited.json["title"] == "Staff Backend Engineer"
    assert edited.json["salary_min"] == 50_000 and edited.json["salary_max"] is None
    assert edited.json["tags"] == ["go"]
    assert edited.json["company"] == "Acme" and edited.json["remote"] is True
    assert (await client.get(f"/api/jobs/{job['id']}")).json == edited.json
    assert (await Job.get(id=job["id"])).location_key == "paris"

    untouched_tags = await client.patch(f"/api/jobs/{job['id']}", json={"remote": False},
                                        headers=auth)
    assert untouched_tags.json["tags"] == ["go"] and untouched_tags.json["remote"] is False

    assert (await client.delete(f"/api/jobs/{job['id']}", headers=auth)).status == 204
    assert_error(await client.get(f"/api/jobs/{job['id']}"), 404, "job not found")
    assert await JobTag.all().count() == 0


async def test_only_the_owner_may_change_a_job(client: Client) -> None:
    _, acme = await register(client, "acme")
    _, other = await register(client, "other")
    job = (await client.post("/api/jobs", json=JOBS[0], headers=acme)).json
    assert_error(await client.patch(f"/api/jobs/{job['id']}", json={"title": "x"},
                                    headers=other), 403, "owner")
    assert_error(await client.delete(f"/api/jobs/{job['id']}", headers=other), 403)
    assert_error(await client.post("/api/jobs", json=JOBS[0]), 401)
    assert_error(await client.patch(f"/api/jobs/{job['id']}", json={"title": "x"}), 401)
    assert (await Job.get(id=job["id"])).title == JOBS[0]["title"]
    for job_id in ("12345", str(2**31), str(10**25)):
        assert_error(await client.get(f"/api/jobs/{job_id}"), 404)
        assert_error(await client.patch(f"/api/jobs/{job_id}", json={"title": "x"},
                                        headers=acme), 404)


async def test_job_validation(client: Client) -> None:
    _, auth = await register(client, "acme")
    base = {"title": "Dev", "company": "Acme", "location": "Berlin"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"company": "Acme", "location": "Berlin"}, "title: is required"),
        ({**base, "title": ""}, "title: must be at least 1 characters"),
        ({**base, "location": "x" * 121}, "location: must be at most 120 characters"),
        ({**base, "salary_min": 100, "salary_max": 50}, "salary_min: must not exceed salary_max"),
        ({**base, "salary_min": -1}, "salary_min:"),
        ({**base, "salary_max": 2**31}, "salary_max:"),
        ({**base, "salary_max": 10**30}, "salary_max:"),
        ({**base, "salary_min": "100"}, "salary_min:"),
        ({**base, "salary_min": 1.5}, "salary_min:"),
        ({**base, "remote": "yes"}, "remote:"),
        ({**base, "tags": "python"}, "tags:"),
        ({**base, "tags": [f"t{i}" for i in range(11)]}, "tags: must have at most 10 items"),
        ({**base, "tags": ["x" * 41]}, "tags: each tag must be 1 to 40 characters"),
        ({**base, "tags": [1]}, "tags.0:"),
        ({**base, "description": "a\x00b"}, "description: must not contain NUL"),
    ]
    for body, message in cases:
        assert_error(await client.post("/api/jobs", json=body, headers=auth), 400, message)
    assert await Job.all().count() == 0

    job = (await client.post("/api/jobs", json={**base, "salary_max": 80}, headers=auth)).json
    for patch, message in [({"salary_min": 100}, "salary_min: must not exceed salary_max"),
                           ({"title": None}, "title: must not be null"),
                           ({"tags": None}, "tags: must not be null"),
                           ({"owner_id": 2}, "owner_id: is not an accepted field")]:
        assert_error(await client.patch(f"/api/jobs/{job['id']}", json=patch, headers=auth),
                     400, message)


async def test_job_filters(client: Client) -> None:
    _, auth = await register(client, "acme")
    await _post_jobs(client, auth)
    assert await _titles(client, location="BERLIN") == [
        "Frontend Developer", "Go Engineer", "Senior Python Developer"]
    assert await _titles(client, remote="true") == [
        "100% Remote SRE_lead", "Data Engineer", "Senior Python Developer"]
    assert await _titles(client, remote="false") == ["Frontend Developer", "Go Engineer"]
    # q matches the title or the company, case-insensitively.
    assert await _titles(client, q="python") == ["Data Engineer", "Senior Python Developer"]
    # LIKE wildcards in q are literal characters.
    assert await _titles(client, q="100%") == ["100% Remote SRE_lead"]
    assert await _titles(client, q="_") == ["100% Remote SRE_lead"]
    assert await _titles(client, q="%") == ["100% Remote SRE_lead"]
    assert await _titles(client, tag="Python") == ["Data Engineer", "Senior Python Developer"]
    assert await _titles(client, tag="python", location="berlin", remote="true") == [
        "Senior Python Developer"]
    assert await _titles(client, location="Tokyo") == []

    first = await client.get("/api/jobs", params={"location": "berlin", "limit": 2})
    assert len(first.json["items"]) == 2
    rest = await client.get("/api/jobs", params={"location": "berlin", "limit": 2,
                                                 "cursor": first.json["next_cursor"]})
    assert [item["title"] for item in rest.json["items"]] == ["Senior Python Developer"]
    assert rest.json["next_cursor"] is None

    # Filters that join (tag) or search (q) page the same way.
    for params in ({"tag": "python"}, {"q": "e", "remote": "true"}):
        titles, cursor = [], None
        while True:
            page = (await client.get("/api/jobs", params={
                **params, "limit": 1, **({"cursor": cursor} if cursor else {})})).json
            titles += [item["title"] for item in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert titles == await _titles(client, **params), params

    for params, field in [({"remote": "maybe"}, "remote:"), ({"limit": "0"}, "limit:"),
                          ({"cursor": "nope"}, "cursor:"), ({"q": "x" * 101}, "q:"),
                          ({"tag": "a\x00"}, "tag:")]:
        assert_error(await client.get("/api/jobs", params=params), 400, field)


async def test_job_stats(client: Client) -> None:
    empty = await client.get("/api/jobs/stats")
    assert empty.status == 200
    assert empty.json["total"] == 0 and empty.json["salary"]["min"] is None

    _, auth = await register(client, "acme")
    await _post_jobs(client, auth)
    stats = (await client.get("/api/jobs/stats")).json
    assert stats["total"] == 5
    assert stats["remote"] == 3
    assert stats["locations"][0]["count"] == 3
    assert stats["locations"][0]["location"].casefold() == "berlin"
    assert {(entry["location"], entry["count"]) for entry in stats["locations"][1:]} == {
        ("London", 1), ("Paris", 1)}
    assert stats["tags"] == [{"tag": "python", "count": 2}, {"tag": "data", "count": 1},
                             {"tag": "go", "count": 1}, {"tag": "sql", "count": 1},
                             {"tag": "sre", "count": 1}]
    assert stats["salary"] == {"min": 50_000, "max": 120_000, "avg_min": 60_000.0,
                               "avg_max": 96_666.67, "jobs_with_salary": 4}

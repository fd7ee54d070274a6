"""Job offers: filtered, keyset-paginated list, statistics, and owner-only writes."""

from __future__ import annotations

from collections import defaultdict

from sanic import Blueprint, Request
from sanic.exceptions import BadRequest, NotFound
from sanic.response import HTTPResponse
from sanic_ext import openapi
from tortoise.transactions import in_transaction

from handlers import docs
from handlers.auth import authenticated, load_owned
from handlers.pagination import query_cursor, split_page
from handlers.responses import json_response
from handlers.schemas import JobBody, JobOut, JobPage, JobPatch, JobStatsOut
from handlers.serialize import job_out, job_row
from handlers.validation import existing_id, parse_body, query_bool, query_limit, query_text
from models.job import Job, JobTag, location_key
from models.job_list import JobFilters, job_by_id, job_rows
from models.stats import job_stats
from models.user import User

bp = Blueprint("jobs", url_prefix="/api/jobs")

# Longest accepted filter values (longer ones are a 400), as documented.
MAX_LOCATION = 120
MAX_QUERY = 100
MAX_TAG = 40


async def _tags_of(job_ids: list[int]) -> dict[int, list[str]]:
    """The tags of several jobs in one query."""
    tags: dict[int, list[str]] = defaultdict(list)
    if job_ids:
        rows = await JobTag.filter(job_id__in=job_ids).order_by("id").values_list("job_id", "tag")
        for job_id, tag in rows:
            tags[job_id].append(tag)
    return tags


async def _own_job(request: Request, job_id: int) -> Job:
    return await load_owned(request, Job, job_id, resource="job", owner_field="owner_id",
                            owner_role="owner")


@bp.get("")
@openapi.definition(
    summary="Job offers, newest first", tag="jobs",
    parameter=[
        *docs.PAGE,
        docs.text_query("location", MAX_LOCATION, "Exact location, case-insensitive."),
        docs.query("remote", bool, "true or false."),
        docs.text_query("q", MAX_QUERY, "Text contained in the title or the company."),
        docs.text_query("tag", MAX_TAG, "Only jobs with this tag."),
    ],
    response=[docs.ok(JobPage, "A page of jobs."), *docs.errors(400)],
)
async def list_jobs(request: Request) -> HTTPResponse:
    """Jobs newest first, filtered by location, remote, text and tag; keyset-paginated.
    One statement per page, tags included."""
    location = query_text(request, "location", max_length=MAX_LOCATION)
    remote = query_bool(request, "remote")
    text = query_text(request, "q", max_length=MAX_QUERY)
    tag = query_text(request, "tag", max_length=MAX_TAG)
    filters = JobFilters(location_key=None if location is None else location_key(location),
                         remote=remote, text=text, tag=None if tag is None else tag.lower())
    limit = query_limit(request)
    cursor = query_cursor(request)
    rows = await job_rows(limit + 1, filters, after=None if cursor is None else cursor.key())
    items, next_cursor = split_page(rows, limit)
    return json_response({"items": items, "next_cursor": next_cursor})


@bp.get("/stats")
@openapi.definition(
    summary="Job statistics", tag="jobs",
    response=[docs.ok(JobStatsOut, "Totals, top locations, tags and salaries.")],
)
async def stats(request: Request) -> HTTPResponse:
    """Aggregates over all jobs, computed by the database."""
    return json_response(await job_stats())


@bp.get("/<job_id:int>")
@openapi.definition(
    summary="One job", tag="jobs", parameter=docs.path_id("job_id", "job"),
    response=[docs.ok(JobOut, "The job."), *docs.errors(404)],
)
async def get_job(request: Request, job_id: int) -> HTTPResponse:
    """A single job with its tags and owner (one statement)."""
    job = await job_by_id(existing_id(job_id, "job"))
    if job is None:
        raise NotFound("job not found")
    return json_response(job)


@bp.post("")
@openapi.definition(
    summary="Post a job", tag="jobs", secured=docs.SECURED,
    body=docs.body(JobBody, "The job; salary_min must not exceed salary_max."),
    response=[docs.ok(JobOut, "The new job.", 201), *docs.errors(400, 401, 413)],
)
@authenticated
async def create_job(request: Request) -> HTTPResponse:
    """Publish a job offer owned by the signed-in user."""
    body = parse_body(request, JobBody)
    user: User = request.ctx.user
    async with in_transaction() as conn:
        job = await Job.create(
            owner_id=user.id, title=body.title, company=body.company, location=body.location,
            remote=body.remote, salary_min=body.salary_min, salary_max=body.salary_max,
            description=body.description, using_db=conn,
        )
        await JobTag.bulk_create([JobTag(job_id=job.id, tag=tag) for tag in body.tags],
                                 using_db=conn)
    return json_response(job_out(job_row(job, user), body.tags), status=201)


@bp.patch("/<job_id:int>")
@openapi.definition(
    summary="Edit a job", tag="jobs", secured=docs.SECURED,
    parameter=docs.path_id("job_id", "job"),
    body=docs.body(JobPatch, "The fields to change; `tags` replaces all tags."),
    response=[docs.ok(JobOut, "The edited job."), *docs.errors(400, 401, 403, 404, 413)],
)
@authenticated
async def update_job(request: Request, job_id: int) -> HTTPResponse:
    """Change some fields of one of the caller's jobs."""
    job = await _own_job(request, job_id)
    body = parse_body(request, JobPatch)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    low = changes.get("salary_min", job.salary_min)
    high = changes.get("salary_max", job.salary_max)
    if low is not None and high is not None and low > high:
        raise BadRequest("salary_min: must not exceed salary_max")
    tags = changes.pop("tags", None)
    async with in_transaction() as conn:
        if changes:
            job.update_from_dict(changes)
            await job.save(using_db=conn)
        if tags is not None:
            await JobTag.filter(job_id=job.id).using_db(conn).delete()
            await JobTag.bulk_create([JobTag(job_id=job.id, tag=tag) for tag in tags],
                                     using_db=conn)
    current = (await _tags_of([job.id]))[job.id] if tags is None else tags
    return json_response(job_out(job_row(job, request.ctx.user), current))


@bp.delete("/<job_id:int>")
@openapi.definition(
    summary="Delete a job", tag="jobs", secured=docs.SECURED,
    parameter=docs.path_id("job_id", "job"),
    response=[docs.ok(None, "Deleted.", 204), *docs.errors(401, 403, 404)],
)
@authenticated
async def delete_job(request: Request, job_id: int) -> HTTPResponse:
    """Delete one of the caller's jobs and its tags."""
    job = await _own_job(request, job_id)
    await job.delete()
    return HTTPResponse(status=204)

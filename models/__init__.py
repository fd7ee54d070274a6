"""Tortoise ORM models, one module per resource."""

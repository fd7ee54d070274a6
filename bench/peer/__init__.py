"""The peer: FastAPI + fastapi-cache2 (RedisBackend) on uvicorn, in its own virtualenv."""

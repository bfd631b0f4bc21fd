"""``latentrec serve``: a trained model behind an HTTP JSON API and a small web page (FastAPI + uvicorn)."""

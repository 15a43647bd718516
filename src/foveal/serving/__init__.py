"""`foveal serve`: a model behind HTTP (FastAPI on uvicorn), with a web page, limits and metrics.
Needs the serve extra: pip install 'foveal[serve]'."""

"""The Ray Serve layer of blender-serve: deployments, the composed ingress and the app builder.

``deployments.builder:build_app`` is the import path for ``serve run`` / ``serve deploy``. The
serving edge is in three places: ``protocol`` (typed requests and responses), ``serving`` (limits,
completions, SSE), ``router`` (the FastAPI app, routes, error handlers); ``ingress`` wires the
deployment and holds the handle API; ``handle_adapters`` dress deployment handles as the
pipeline's components.
"""

__all__ = ["builder", "config", "protocol", "serving", "router", "ingress", "handle_adapters", "errors"]

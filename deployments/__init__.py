"""The Ray Serve layer of blender-serve: deployments, the composed ingress and the app builder.

``deployments.builder:build_app`` is the import path for ``serve run`` / ``serve deploy``.
"""

__all__ = ["builder", "config", "protocol", "errors"]

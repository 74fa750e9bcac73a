"""A miniature LLM-Blender reproduction: seeded, programmatically checkable tasks for a tiny ensemble."""

__all__: list[str] = []

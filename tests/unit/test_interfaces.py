"""The pipeline's seams: the in-process components and the deployment-handle adapters both satisfy
the Protocols of blender_serve.interfaces, method by method and signature by signature."""

from __future__ import annotations

import inspect

import pytest

from blender_serve.fuser import GeneratorFuser, GenFuser, PromptedFuser
from blender_serve.generators import GENERATORS
from blender_serve.interfaces import FuserProtocol, GeneratorProtocol, RankerProtocol
from blender_serve.ranker import PairRanker
from deployments.handle_adapters import HandleFuser, HandleGenerator, HandleRanker

IMPLEMENTATIONS = [
    *[(GeneratorProtocol, cls) for cls in GENERATORS.values()],
    (GeneratorProtocol, HandleGenerator),
    (RankerProtocol, PairRanker),
    (RankerProtocol, HandleRanker),
    (FuserProtocol, GenFuser),
    (FuserProtocol, PromptedFuser),
    (FuserProtocol, GeneratorFuser),
    (FuserProtocol, HandleFuser),
]


def _members(protocol) -> dict[str, object]:
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def _check_signature(protocol, name: str, wanted, impl_cls) -> None:
    got = inspect.getattr_static(impl_cls, name)
    where = f"{impl_cls.__name__}.{name}"
    if isinstance(wanted, property):
        assert isinstance(got, property), f"{where} must be a property"
        return
    assert callable(got), f"{where} is missing"
    if inspect.iscoroutinefunction(wanted):
        assert inspect.iscoroutinefunction(got), f"{where} must be async (the pipeline awaits it)"
    else:  # a stream: called without await, iterated with async for
        assert not inspect.iscoroutinefunction(got), f"{where} must return an async iterator, not a coroutine"
    want_params = list(inspect.signature(wanted).parameters.values())
    got_params = list(inspect.signature(got).parameters.values())
    positional = [p for p in got_params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for k, p in enumerate(want_params):
        assert k < len(positional) and positional[k].name == p.name, \
            f"{where}: parameter {k} should be {p.name!r}, got {[q.name for q in positional]}"
        if p.default is not p.empty:
            assert positional[k].default is not p.empty, f"{where}: {p.name!r} must be optional"
    for extra in positional[len(want_params):]:
        assert extra.default is not extra.empty, f"{where}: extra parameter {extra.name!r} needs a default"


@pytest.mark.parametrize("protocol, impl", IMPLEMENTATIONS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_implementation_satisfies_its_protocol(protocol, impl):
    members = _members(protocol)
    assert members, "the protocol declares no methods"
    for name, wanted in members.items():
        _check_signature(protocol, name, wanted, impl)


class _Handle:
    """Just enough of a DeploymentHandle to build an adapter (nothing is called)."""

    def options(self, **kwargs):
        return self


def test_instances_pass_the_runtime_check():
    from blender_serve.generators import build_generator

    assert isinstance(build_generator({"name": "s", "backend": "scripted"}), GeneratorProtocol)
    assert isinstance(HandleGenerator("s", _Handle()), GeneratorProtocol)
    assert isinstance(HandleRanker(_Handle()), RankerProtocol)
    assert isinstance(HandleFuser(_Handle()), FuserProtocol)
    assert not isinstance(HandleRanker(_Handle()), FuserProtocol)  # the check can fail


def test_a_wrong_signature_is_caught():
    class Backwards:
        async def arank(self, candidates, source, strategy="max_logits", top_k=None): ...

        async def acompare(self, source, candidate_a, candidate_b, mode="both"): ...

    with pytest.raises(AssertionError, match="parameter 1 should be .source."):
        _check_signature(RankerProtocol, "arank", RankerProtocol.arank, Backwards)

"""The private Pulumi SDK APIs the stack relies on, each here once with why no public one serves.

Everything else uses public API only. The SDKs are imported inside each function, so the
policy pack (pulumi and pulumi-policy only) and the offline engine load just what they call.
When an SDK upgrade moves one of these, this module is the one place to fix; the offline
preview's and the policy pack's tests exercise each.
"""

from __future__ import annotations

from typing import Any, Callable


def is_secret_envelope(value: Any) -> bool:
    """Whether a deserialized property is the engine's secret wrapper ({sig: secret, value: ...}).

    The mock monitor hands the offline engine raw RPC properties; the SDK exposes no public
    test for the secret signature it writes into them.
    """
    from pulumi.runtime import rpc

    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def decode_properties(struct: Any) -> dict[str, Any]:
    """The property map of a RegisterResource request, as the SDK serialized it.

    The offline engine records what the program sends to the engine; only the SDK's own
    decoder reads its wire format (secrets, unknowns, resource references) back.
    """
    from pulumi.runtime import rpc

    return rpc.deserialize_properties(struct)


def run_program_in_stack(main: Callable[[], None]) -> None:
    """Run `main` as a Pulumi program under a root Stack of our own, and wait for it to finish.

    `pulumi.runtime.set_mocks` seals the root Stack it creates at once, so the program's
    exports would be lost; replacing it and driving the program to completion is what the
    CLI's language host does, with no public entry point for an in-process run.
    """
    from pulumi.runtime import settings
    from pulumi.runtime.stack import Stack, run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    settings.set_root_resource(None)  # type: ignore[arg-type]
    root = Stack()

    def program() -> None:
        main()
        root._finish()

    _sync_await(run_pulumi_func(program))


def policy_proxy_target(value: Any) -> Any:
    """The plain dict or list inside a pulumi-policy property proxy; other values unchanged.

    The proxies raise on every unknown value during preview, and pulumi-policy offers no
    public way to read through them, so a policy could not skip an unknown instead.
    """
    from pulumi_policy import proxy

    if isinstance(value, (proxy._DictProxy, proxy._ListProxy)):
        return value["__target"]
    return value

"""``tfw up``: the whole firewall on one machine, in one command, with one log stream.

Starts nats-server (JetStream, data under ``.data/``) and SecantusDB unless
``TFW_NATS_URL`` / ``TFW_MONGODB_URI`` point elsewhere, then the resolver, decider,
audit and the proxy. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from tfw.secure import SecureNats, SecureProfileError, bootstrap, prepare
from tfw.stack import ROOT, Stack, StackError, free_port


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("up", help="start NATS, the database, the services and the proxy")
    add_stack_arguments(parser)
    parser.add_argument(
        "--secure",
        action="store_true",
        help="NATS over TLS (a local CA made for this run) with one user per service and "
        "the Kubernetes permissions: only the resolver reads token-bearing subjects",
    )
    parser.set_defaults(handler=handle)


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=str(ROOT / ".data"), help="where servers keep data")
    parser.add_argument("--proxy-port", type=int, default=8080, help="proxy listen port")
    parser.add_argument("--rules", help="a rule file for the decider (YAML)")
    parser.add_argument(
        "--teams-sim",
        metavar="ORG",
        help="serve Teams from the simulator with this organisation YAML instead of "
        "Microsoft: the proxy and the resolver's lookups go to it (for trying rules "
        "with your own requests, e.g. `tfw demo --scenario` or curl through the proxy)",
    )


def start_stack(
    args: argparse.Namespace, stack: Stack, extra_env: dict[str, str] | None = None
) -> SecureNats | None:
    """Start infrastructure (unless given) and the four services; with ``--secure``,
    returns the secured NATS the services connect to."""
    secure = None
    if getattr(args, "secure", False):
        secure = start_secure_nats(stack)
    elif not os.environ.get("TFW_NATS_URL"):
        stack.start_nats()
    else:
        stack.nats_url = os.environ["TFW_NATS_URL"]
    if not os.environ.get("TFW_MONGODB_URI"):
        stack.start_mongo()
    else:
        stack.mongodb_uri = os.environ["TFW_MONGODB_URI"]
    env = dict(extra_env or {})
    decider_env = dict(env)
    if args.rules:
        decider_env["TFW_RULES_FILE"] = str(Path(args.rules).resolve())
    def nats_env(service: str) -> dict[str, str]:
        return secure.service_env(service) if secure is not None else {}

    stack.start_service("resolver", {**env, **nats_env("resolver")})
    stack.start_service("decider", {**decider_env, **nats_env("decider")})
    stack.start_service("audit", {**env, **nats_env("audit")})
    stack.start_service(
        "interceptor",
        {**env, **nats_env("interceptor"), "TFW_LISTEN_PORT": str(args.proxy_port)},
    )
    return secure


def start_secure_nats(stack: Stack, prefix: str | None = None) -> SecureNats:
    """nats-server with TLS and per-service users (``tfw.secure``), bootstrapped as
    the admin user; ``stack.nats_url`` becomes its ``tls://`` address."""
    prefix = prefix or os.environ.get("TFW_SUBJECT_PREFIX") or "tfw"
    try:
        secure = prepare(stack.data_dir, free_port(), prefix)
        stack.start_nats(secure.port, ["-c", str(secure.config)], env=secure.server_env())
        stack.nats_url = secure.url
        bootstrap(secure, prefix)
    except SecureProfileError as exc:
        raise StackError(str(exc)) from None
    return secure


def simulator_env(port: int) -> dict[str, str]:
    """Environment that sends every Teams request, the proxy's and the resolver's, to
    the Teams simulator on ``port`` (decided first, on the real Teams host)."""
    simulator = f"http://127.0.0.1:{port}"
    return {
        "TFW_MAP_REMOTE": f"|https://([a-z0-9.-]+)/|{simulator}/_host/\\1/",
        "TFW_TEAMS_REDIRECT": simulator,
    }


def handle(args: argparse.Namespace) -> int:
    if getattr(args, "secure", False) and not args.rules:
        # `tfw rules push` speaks plain NATS without credentials, so a secured server
        # gets its rules from the file the decider reads at start.
        print("tfw up: --secure needs --rules FILE (tfw rules push cannot reach a "
              "secured NATS)", file=sys.stderr)
        return 2
    stack = Stack(Path(args.data_dir))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    simulator = None
    try:
        extra_env: dict[str, str] = {}
        if getattr(args, "teams_sim", None):
            from tfw.sim.org import OrgError, load_org
            from tfw.sim.teams import TeamsSimulator

            try:
                simulator = TeamsSimulator(load_org(args.teams_sim))
            except OrgError as exc:
                print(f"tfw up: {exc}", file=sys.stderr)
                return 2
            extra_env = simulator_env(simulator.start())
            print(f"Teams simulator on {simulator.url} serving {args.teams_sim}", file=sys.stderr)
        start_stack(args, stack, extra_env)
        print(
            f"TeamsFirewall is up: proxy on 127.0.0.1:{args.proxy_port}, NATS {stack.nats_url}. "
            "Ctrl-C stops everything.",
            file=sys.stderr,
        )
        if getattr(args, "secure", False):
            print(
                "Secure profile: NATS speaks TLS only (CA "
                f"{stack.data_dir / 'nats-secure' / 'nats-ca.pem'}), one user per service.",
                file=sys.stderr,
            )
        while not stopping.wait(0.5):
            for process in stack.processes:
                if process.popen.poll() is not None:
                    print(f"{process.name} exited with {process.popen.returncode}", file=sys.stderr)
                    stopping.set()
    except StackError as exc:
        print(f"tfw up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        if simulator is not None:
            simulator.stop()
    return 0

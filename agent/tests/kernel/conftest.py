import os

import pytest


def pytest_collection_modifyitems(config, items):
    # These tests make network namespaces: they need root. Skipping silently would hide a broken CI, so
    # without root they fail unless FAULTLINE_SKIP_NETNS=1 says that skipping is intended.
    if os.geteuid() != 0 and os.environ.get("FAULTLINE_SKIP_NETNS") == "1":
        skip = pytest.mark.skip(reason="FAULTLINE_SKIP_NETNS=1 and not root")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def peers():
    """The Go test peers (e2e/peers: grpc-go, crypto/tls, net/http), built once from their Go modules."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([str(repo / "e2e" / "build-peers.sh")], capture_output=True, text=True, check=True)
    return str(Path(out.stdout.strip().splitlines()[-1]) / "peers")

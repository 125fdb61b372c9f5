"""The error dashboard over entries from real traffic: its API (queries, bad queries, the live stream, one
entry, its pcap, saved queries, who may see what) and the page itself in a real browser (Debian's Chromium
driven by Playwright), leaving a screenshot in target/e2e-artifacts."""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cluster import ADMIN_TOKEN
from processes import REPO, eventually
from system import DASHBOARD, PODS, grpc_calls, make_errors

ARTIFACTS = REPO / "target" / "e2e-artifacts"


def get(port, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, (json.loads(body) if r.headers.get_content_type() == "application/json" else body)
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, (json.loads(body) if e.headers.get_content_type() == "application/json" else body)


def entries(port, q, token=ADMIN_TOKEN, limit=None):
    path = "/api/entries?q=" + urllib.parse.quote(q) + (f"&limit={limit}" if limit else "")
    return get(port, path, token)


@pytest.fixture(scope="module")
def tokens(cluster):
    """A ServiceAccount that may read ErrorViews in shop only, and one that may read nothing."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-viewer", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": "shop"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "errorview-reader", "namespace": "shop"},
         "rules": [{"apiGroups": ["faultline.dev"], "resources": ["errorviews"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "shop-viewer", "namespace": "shop"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "errorview-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "shop-viewer", "namespace": "shop"}]}]}))
    token = lambda sa: cluster.kubectl("create", "token", sa, "-n", "shop").stdout.strip()  # noqa: E731
    return {"shop": token("shop-viewer"), "nobody": token("nobody")}


@pytest.fixture(scope="module")
def traffic(system):
    """pod-a → pod-b (shop): refused, 503, ICMP port unreachable, reset; pod-c → pod-d (other): refused."""
    lab, port = system["lab"], system["operator"].port
    make_errors(lab, 43000)
    lab.traffic("c", "connect", PODS["d"][3], "82", "--sport", "43100")

    def arrived():
        status, body = entries(port, DASHBOARD)
        return status == 200 and body["total"] >= 5 and body
    return eventually(arrived, timeout=40, what="5 entries on the dashboard")


def test_entries_match_the_query_newest_first(system, traffic):
    port = system["operator"].port
    assert traffic["counts"] == {"tcp/SynSent": 2, "http/5xx": 1, "icmp/DestinationUnreachable": 1, "tcp/Reset": 1}
    assert traffic["total"] == 5 and traffic["query"] == DASHBOARD
    stamps = [e["timestamp"] for e in traffic["entries"]]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    http = next(e for e in traffic["entries"] if e["protocol"] == "http")
    assert http["src"]["name"] == "pod-a" and http["dst"]["name"] == "pod-b" and http["response"]["status"] == 503
    assert http["kind"] == "http/5xx" and "GET /checkout" in http["summary"]

    status, body = entries(port, DASHBOARD, limit=2)
    assert status == 200 and len(body["entries"]) == 2 and body["total"] == 5, "limit cuts the list, not the counts"
    status, body = entries(port, "response.status == 503")
    assert status == 200 and [e["id"] for e in body["entries"]] == [http["id"]]

    status, one = get(port, f"/api/entries/{urllib.parse.quote(http['id'])}", ADMIN_TOKEN)
    assert status == 200 and one["id"] == http["id"] and one["request"]["path"] == "/checkout"
    assert get(port, "/api/entries/no-such-id", ADMIN_TOKEN)[0] == 404


def test_a_bad_query_is_refused_with_the_parsers_message(system, traffic):
    port = system["operator"].port
    for path in ("/api/entries?q=", "/api/entries/stream?q="):
        status, body = get(port, path + urllib.parse.quote("response.status = 400"), ADMIN_TOKEN)
        assert status == 400
        assert body["column"] == 17 and body["message"].startswith("unknown operator '='"), body


def test_callers_see_only_namespaces_whose_errorviews_they_may_read(system, traffic, tokens):
    port = system["operator"].port
    assert get(port, "/api/entries")[0] == 401, "no token, and the dashboard was not opened to anonymous callers"
    assert get(port, "/api/entries", "not-a-token")[0] == 401
    assert get(port, "/api/errorviews")[0] == 401

    status, shop = entries(port, DASHBOARD, tokens["shop"])
    assert status == 200 and shop["total"] == 4
    assert all("shop" in (e["src"]["namespace"], e["dst"]["namespace"]) for e in shop["entries"])
    status, nobody = entries(port, DASHBOARD, tokens["nobody"])
    assert status == 200 and nobody == {"query": DASHBOARD, "total": 0, "counts": {}, "entries": []}

    other = next(e for e in traffic["entries"] if e["dst"]["name"] == "pod-d")
    path = f"/api/entries/{urllib.parse.quote(other['id'])}"
    assert get(port, path, ADMIN_TOKEN)[0] == 200
    assert get(port, path, tokens["shop"])[0] == 404, "an entry of another namespace does not exist for shop"

    status, views = get(port, "/api/errorviews", tokens["shop"])
    assert status == 200 and {(v["namespace"], v["name"]) for v in views} == {("shop", "errors"), ("shop", "bad")}
    status, views = get(port, "/api/errorviews", ADMIN_TOKEN)
    assert {("other", "errors"), ("faultline-system", "all-tcp")} <= {(v["namespace"], v["name"]) for v in views}
    assert next(v for v in views if v["name"] == "all-tcp")["query"] == "tcp"


def test_the_stream_delivers_new_matching_entries(system, traffic, tokens):
    port = system["operator"].port
    got, opened = [], threading.Event()

    def listen(token, sink):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/entries/stream?q=" + urllib.parse.quote("tcp"),
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.headers.get_content_type() == "text/event-stream"
            opened.set()
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    sink.append(json.loads(line[5:]))
                    return

    other_ns = []
    threads = [threading.Thread(target=listen, args=(ADMIN_TOKEN, got), daemon=True),
               threading.Thread(target=listen, args=(tokens["shop"], other_ns), daemon=True)]
    for t in threads:
        t.start()
    assert opened.wait(10)
    # A new refused connection in namespace other: the admin's stream gets it, shop's does not.
    system["lab"].traffic("c", "connect", PODS["d"][3], "83", "--sport", "43101")
    threads[0].join(timeout=30)
    assert got and got[0]["tcp"]["state"] == "SynSent" and got[0]["src"]["port"] == 43101, got
    assert got[0]["kind"] == "tcp/SynSent"
    assert other_ns == [], "shop's stream must not carry another namespace's entry"


def test_an_entrys_pcap_is_served_beside_it(system, traffic, tokens):
    port = system["operator"].port
    recorded = eventually(lambda: next((e for e in entries(port, "tcp")[1]["entries"] if e.get("pcap")), None),
                          what="an entry with a recording")
    status, body = get(port, f"/api/entries/{urllib.parse.quote(recorded['id'])}/pcap", ADMIN_TOKEN)
    assert status == 200 and body[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1")
    assert get(port, f"/api/entries/{urllib.parse.quote(recorded['id'])}/pcap")[0] == 401


def test_the_page_in_a_real_browser(system, traffic):
    from playwright.sync_api import expect, sync_playwright

    port = system["operator"].port
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/?q=response.status%20%3E%20400%20or%20error%20or%20icmp%20or%20tcp"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        try:
            want = entries(port, DASHBOARD)[1]  # the traffic above, and whatever earlier tests added
            page.goto(url + "#token=" + ADMIN_TOKEN)
            rows = page.locator("#entries tbody tr")
            expect(rows).to_have_count(want["total"])
            expect(page.locator("#q")).to_have_value(DASHBOARD)
            table = page.locator("#entries tbody").inner_text()
            for text in ("SynSent (refused)", "503", "DestinationUnreachable/Port", "Reset",
                         "shop/pod-a → shop/pod-b", "other/pod-c → other/pod-d"):
                assert text in table, f"{text!r} not in the table:\n{table}"
            expect(page.locator('#counts li[data-kind="tcp/SynSent"] .n')).to_have_text(str(want["counts"]["tcp/SynSent"]))
            expect(page.locator("#live")).to_have_text("live")
            assert "token" not in page.url, "the token is taken out of the URL"

            # Saved queries are the ErrorViews; a new query changes the URL (bookmarkable) and the rows.
            expect(page.locator("#views a", has_text="faultline-system/all-tcp")).to_have_count(1)
            page.fill("#q", "response.status == 503")
            page.press("#q", "Enter")
            expect(rows).to_have_count(1)
            assert page.url.endswith("/?q=response.status%20%3D%3D%20503"), page.url
            rows.first.click()
            expect(page.locator("#detail")).to_be_visible()
            facts = page.locator("#detail-facts").inner_text()
            assert "GET /checkout" in facts and "503" in facts and "shop/pod-b" in facts, facts
            assert "Pod/pod-a → Pod/pod-b" in facts, facts

            # A gRPC call that failed answered with HTTP 200: the row reads as the failure it is, and the
            # detail names the call and its status.
            page.click("#close-detail")
            assert grpc_calls(system["lab"], "a", "b", 50052, "Checkout:5") == [["Checkout", "UNAVAILABLE"]]
            eventually(lambda: entries(port, "grpc")[1]["total"] == 1, timeout=30, what="the gRPC entry")
            page.fill("#q", "grpc")
            page.press("#q", "Enter")
            expect(rows).to_have_count(1, timeout=30_000)
            expect(rows.first).to_contain_text("200 · gRPC UNAVAILABLE")
            expect(rows.first.locator("td.bad")).to_have_count(1)
            rows.first.click()
            expect(page.locator("#detail-facts")).to_contain_text("shop.Cart/Checkout")
            expect(page.locator("#detail-facts")).to_contain_text("14 UNAVAILABLE: no healthy upstream")
            page.click("#close-detail")

            # Live: a new error appears without a reload.
            page.click("#views a:has-text('faultline-system/all-tcp')")
            expect(page.locator("#q")).to_have_value("tcp")
            before = rows.count()
            system["lab"].traffic("c", "connect", PODS["d"][3], "84", "--sport", "43102")
            expect(rows).to_have_count(before + 1, timeout=30_000)
            expect(rows.first).to_contain_text("other/pod-c → other/pod-d")
            expect(rows.first).to_have_class("fresh")

            # A bad query shows the parser's message under the column it points at.
            page.fill("#q", "response.status = 400")
            page.press("#q", "Enter")
            expect(page.locator("#query-error")).to_contain_text("column 17: unknown operator '='")

            page.goto(url)
            expect(rows).to_have_count(entries(port, DASHBOARD)[1]["total"])
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            rows.first.click()
            expect(page.locator("#detail")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"), full_page=True)

            # A laptop and a wall screen: the text grows with the screen, and the page never needs
            # sideways scrolling (only the table's own box may scroll).
            sizes = {}
            for name, (w, h) in {"laptop": (1280, 800), "wall": (3840, 2160)}.items():
                page.set_viewport_size({"width": w, "height": h})
                page.goto(url)
                expect(rows.first).to_be_visible()
                sizes[name] = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
                page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"))
            assert sizes["wall"] >= 1.8 * sizes["laptop"], sizes
        finally:
            browser.close()


def test_the_wall_screen_counts_what_the_api_counts_and_clicks_narrow_the_query(system, traffic):
    """The wall view: errors per minute by kind (the bars and the legend add up to the API's counts), the
    top failing pairs, at a laptop's, a desktop's and a wall screen's size; clicking a kind or a pair narrows
    the KFL query, the URL and the table to it."""
    from playwright.sync_api import expect, sync_playwright

    port = system["operator"].port
    want = get(port, "/api/overview?minutes=15&q=" + urllib.parse.quote(DASHBOARD), ADMIN_TOKEN)[1]
    assert want["kinds"] == entries(port, DASHBOARD)[1]["counts"], "every entry here is of the last 15 minutes"
    assert want["total"] == sum(want["kinds"].values()) and want["pairs"]
    url = f"http://127.0.0.1:{port}/?q={urllib.parse.quote(DASHBOARD)}&view=wall"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        try:
            page.goto(url + "#token=" + ADMIN_TOKEN)
            expect(page.locator("#overview")).to_be_visible()
            expect(page.locator("#legend li")).to_have_count(len(want["kinds"]))
            for kind, n in want["kinds"].items():
                expect(page.locator(f'#legend li[data-kind="{kind}"] .n')).to_have_text(str(n))
            bars = page.evaluate("() => [...document.querySelectorAll('#chart rect')]"
                                 ".map(r => [r.dataset.kind, Number(r.dataset.count)])")
            sums = {}
            for kind, n in bars:
                sums[kind] = sums.get(kind, 0) + n
            assert sums == want["kinds"], (sums, want["kinds"])
            for name, (w, h) in {"laptop": (1280, 800), "desktop": (1920, 1080), "wall": (3840, 2160)}.items():
                page.set_viewport_size({"width": w, "height": h})
                expect(page.locator("#pairs li").first).to_be_visible()
                fits = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
                assert fits, name
                page.screenshot(path=str(ARTIFACTS / f"dashboard-wall-view-{name}.png"))

            # A kind narrows the query (and the URL, and the table) to it.
            page.locator('#legend li[data-kind="tcp/SynSent"]').click()
            narrowed = f'({DASHBOARD}) and kind == "tcp/SynSent"'
            expect(page.locator("#q")).to_have_value(narrowed)
            assert urllib.parse.unquote(page.url).endswith(f"?q={narrowed}&view=wall"), page.url
            expect(page.locator("#entries tbody tr")).to_have_count(entries(port, narrowed)[1]["total"])
            expect(page.locator("#legend li")).to_have_count(1)

            # So does a pair.
            page.goto(url)
            first = page.locator("#pairs li").first
            pair_query, count = first.get_attribute("data-query"), int(first.locator(".n").inner_text())
            assert pair_query == want["pairs"][0]["query"] and count == want["pairs"][0]["count"]
            first.click()
            expect(page.locator("#q")).to_have_value(f"({DASHBOARD}) and {pair_query}")
            expect(page.locator("#entries tbody tr")).to_have_count(count)
        finally:
            browser.close()


def test_the_error_map_draws_the_apis_failing_pairs_and_a_click_narrows_to_one(system, traffic):
    """The map view: an edge per failing client → server pair the API counts (each pair's count is the
    errors its query selects), drawn edge for edge at a laptop's and a wall screen's size; clicking an
    edge narrows the KFL query, the URL and the table to that pair."""
    from playwright.sync_api import expect, sync_playwright

    port = system["operator"].port
    want = get(port, "/api/map?minutes=15&q=" + urllib.parse.quote(DASHBOARD), ADMIN_TOKEN)[1]
    assert len(want["edges"]) >= 2 and want["total"] == sum(e["count"] for e in want["edges"]), want
    for e in want["edges"]:
        # What the entries API selects for the pair (every entry this traffic made is an error).
        assert entries(port, f"({DASHBOARD}) and {e['query']}")[1]["total"] == e["count"], e
    assert {ns["name"] for ns in want["namespaces"]} >= {"shop", "other"}, want["namespaces"]
    url = f"http://127.0.0.1:{port}/?q={urllib.parse.quote(DASHBOARD)}&view=map"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        try:
            page.goto(url + "#token=" + ADMIN_TOKEN)
            expect(page.locator("#error-map")).to_be_visible()
            expect(page.locator("#map path.edge")).to_have_count(len(want["edges"]))
            drawn = page.evaluate("() => [...document.querySelectorAll('#map path.edge')]"
                                  ".map(p => [p.dataset.source, p.dataset.destination, Number(p.dataset.count)])")
            assert sorted(drawn) == sorted([e["source"], e["destination"], e["count"]] for e in want["edges"])
            nodes = page.evaluate("() => [...document.querySelectorAll('#map .node')].map(n => n.dataset.id)")
            assert sorted(nodes) == sorted(n for ns in want["namespaces"] for n in ns["nodes"])
            for name, (w, h) in {"laptop": (1280, 800), "wall": (3840, 2160)}.items():
                page.set_viewport_size({"width": w, "height": h})
                expect(page.locator("#map svg")).to_be_visible()
                fits = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
                assert fits, name
                page.screenshot(path=str(ARTIFACTS / f"dashboard-map-{name}.png"))
            page.set_viewport_size({"width": 1280, "height": 800})
            busiest = want["edges"][0]
            page.evaluate("q => [...document.querySelectorAll('#map path.edge')].find(p => p.dataset.query === q)"
                          ".dispatchEvent(new MouseEvent('click', {bubbles: true}))", busiest["query"])
            narrowed = f"({DASHBOARD}) and {busiest['query']}"
            expect(page.locator("#q")).to_have_value(narrowed)
            assert urllib.parse.unquote(page.url).endswith(f"?q={narrowed}&view=map"), page.url
            expect(page.locator("#entries tbody tr")).to_have_count(entries(port, narrowed)[1]["total"])
            expect(page.locator("#map path.edge")).to_have_count(1)
        finally:
            browser.close()


def test_long_names_codes_and_paths_never_make_the_page_scroll_sideways(cluster, system, traffic):
    """A pod with a 200-character name, an ICMP CommunicationAdministrativelyProhibited, a 400-byte path: at a
    laptop's, a desktop's and a wall screen's size the page and the table fit the width, long text is cut
    with its whole in the cell's title, and the errors read as errors. (Runs last: pod-c's address is given
    to the long-named pod.)"""
    import subprocess

    from playwright.sync_api import expect, sync_playwright

    lab, port = system["lab"], system["operator"].port
    long_name = "checkout-" + "very-long-" * 19 + "x"
    ns_c, ip_c = PODS["c"][0], PODS["c"][3]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": long_name, "namespace": ns_c},
        "spec": {"nodeName": "node-b", "containers": [{"name": "app", "image": "example/app"}]}}))
    cluster.kubectl("-n", ns_c, "patch", "pod", long_name, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"phase": "Running", "podIP": ip_c, "podIPs": [{"ip": ip_c}]}}))
    time.sleep(2)  # the operator's pod watch
    pod_d = lab.pods["d"][0]
    rule = ["INPUT", "-p", "tcp", "--dport", "86", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
    subprocess.run(["ip", "netns", "exec", pod_d, "iptables", "-I", *rule], check=True)
    try:
        lab.traffic("c", "connect", PODS["d"][3], "86", "--sport", "43200")
    finally:
        subprocess.run(["ip", "netns", "exec", pod_d, "iptables", "-D", *rule], check=True)
    srv = lab.server("d", "serve", "8086", "error")
    path = "/api/" + "segment/" * 50
    lab.traffic("c", "connect", PODS["d"][3], "8086", "--sport", "43201", "--send",
                f"GET {path} HTTP/1.1\\r\\nHost: other\\r\\n\\r\\n", "--wait", "0.5")
    srv.wait(timeout=5)
    q = f'src.name == "{long_name}" or dst.name == "{long_name}"'
    eventually(lambda: entries(port, q)[1]["total"] >= 3, timeout=40, what="the long-named pod's errors")

    url = f"http://127.0.0.1:{port}/?q=" + urllib.parse.quote(q)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        try:
            page.goto(url + "#token=" + ADMIN_TOKEN)
            for name, (w, h) in {"laptop": (1280, 800), "desktop": (1920, 1080), "wall": (3840, 2160)}.items():
                page.set_viewport_size({"width": w, "height": h})
                page.goto(url)
                rows = page.locator("#entries tbody tr")
                expect(rows).to_have_count(entries(port, q)[1]["total"])
                fits = page.evaluate("""() => {
                    const wrap = document.getElementById("table-wrap");
                    return [document.documentElement.scrollWidth <= window.innerWidth,
                            wrap.scrollWidth <= wrap.clientWidth + 1];
                }""")
                assert fits == [True, True], f"{name}: page, table fit: {fits}"
                icmp = rows.filter(has_text="CommunicationAdministrativelyProhibited")
                expect(icmp).to_have_count(1)
                status = icmp.locator("td").nth(4)
                assert status.get_attribute("title") == "DestinationUnreachable/CommunicationAdministrativelyProhibited"
                assert "bad" in status.get_attribute("class")
                ends = icmp.locator("td").nth(3).get_attribute("title")
                assert long_name in ends, ends
                http = rows.filter(has_text="503")
                expect(http.first).to_be_visible()
                # The summary column is on screen, right of the status, not pushed off it.
                box = http.first.locator("td.summary").bounding_box()
                assert box and box["x"] + min(box["width"], 50) <= w, (name, box)
                page.screenshot(path=str(ARTIFACTS / f"dashboard-long-{name}.png"))
        finally:
            browser.close()


def mcp_session(port, token, work):
    """Runs `work(session)` in a session of the official MCP Python SDK against the operator's `/mcp`."""
    import anyio
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as http, \
                streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)
    return anyio.run(run)


def tool_json(result):
    assert not result.isError, result.content
    return json.loads(result.content[0].text)


def test_an_assistant_asks_through_mcp_and_sees_what_the_dashboard_shows_it(system, traffic, tokens):
    """MCP (the official Python SDK as the assistant's side): the tools are listed; list_errors returns the
    errors the entries API returns for the same query; get_entry, explain and error_summary agree with it;
    a token that may read ErrorViews only in shop gets none of other's entries, and one that may read none
    gets nothing."""
    port = system["operator"].port

    async def everything(s):
        names = sorted(t.name for t in (await s.list_tools()).tools)
        listed = tool_json(await s.call_tool("list_errors", {"query": DASHBOARD, "limit": 100}))
        first = listed["entries"][0]["id"]
        entry = tool_json(await s.call_tool("get_entry", {"id": first}))
        why = tool_json(await s.call_tool("explain", {"id": first}))
        summary = tool_json(await s.call_tool("error_summary", {"query": DASHBOARD}))
        shop = tool_json(await s.call_tool("list_errors", {"query": DASHBOARD, "namespace": "shop"}))
        views = tool_json(await s.call_tool("list_views", {}))
        missing = await s.call_tool("get_entry", {"id": "no-such-entry"})
        return names, listed, entry, why, summary, shop, views, missing

    names, listed, entry, why, summary, shop, views, missing = mcp_session(port, ADMIN_TOKEN, everything)
    assert names == ["error_summary", "explain", "get_entry", "get_pcap", "list_errors", "list_views"]
    want = entries(port, DASHBOARD)[1]
    assert [e["id"] for e in listed["entries"]] == [e["id"] for e in want["entries"]]
    assert listed["counts"] == want["counts"] and listed["total"] == want["total"]
    assert entry["id"] == want["entries"][0]["id"] and entry["summary"] == want["entries"][0]["summary"]
    assert why["id"] == entry["id"] and why["explained"] == ("cause" in entry)
    assert summary["total"] == want["total"] and summary["byKind"] == want["counts"]
    assert sum(p["count"] for p in summary["pairs"]) == want["total"]
    assert {e["id"] for e in shop["entries"]} == {e["id"] for e in entries(port, f"({DASHBOARD}) and "
                                                                           '(src.namespace == "shop" or dst.namespace == "shop")')[1]["entries"]}
    assert {(v["namespace"], v["name"]) for v in views["views"]} >= {("shop", "errors"), ("other", "errors")}
    assert missing.isError and "404" in missing.content[0].text

    # Scoped exactly as the dashboard: shop's viewer sees shop's entries only; nobody sees nothing.
    async def listing(s):
        return tool_json(await s.call_tool("list_errors", {"query": DASHBOARD, "limit": 100}))

    seen = mcp_session(port, tokens["shop"], listing)
    namespaces = {ep.get("namespace") for e in seen["entries"] for ep in (e["src"], e["dst"])}
    assert seen["entries"] and "other" not in namespaces, namespaces
    assert seen["total"] == entries(port, DASHBOARD, tokens["shop"])[1]["total"]
    assert mcp_session(port, tokens["nobody"], listing)["entries"] == []


def test_the_stdio_server_an_assistant_starts_answers_as_the_operator_would_for_its_token(system, traffic, tokens):
    """`faultline-agent mcp` (stdio), as an assistant starts it, with shop's viewer's token: the SDK's stdio
    client gets the tools, and list_errors returns exactly what the entries API shows that token."""
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    port = system["operator"].port
    params = StdioServerParameters(command=str(REPO / "target" / "debug" / "faultline-agent"),
                                   args=["mcp", "--url", f"http://127.0.0.1:{port}/mcp"],
                                   env={"FAULTLINE_TOKEN": tokens["shop"], "PATH": "/usr/bin:/bin"})

    async def run():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                names = sorted(t.name for t in (await s.list_tools()).tools)
                listed = tool_json(await s.call_tool("list_errors", {"query": DASHBOARD, "limit": 100}))
                return names, listed

    names, listed = anyio.run(run)
    assert "list_errors" in names and "explain" in names
    want = entries(port, DASHBOARD, tokens["shop"])[1]
    assert [e["id"] for e in listed["entries"]] == [e["id"] for e in want["entries"]] and want["entries"]

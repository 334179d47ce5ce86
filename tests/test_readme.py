"""The README's quickstart runs as written and does what it says."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quickstart_commits_on_all_three_nodes():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Quickstart.*?```python\n(.*?)```", text, re.S)
    assert block, "the README has a Python quickstart block"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    printed = out.getvalue()
    for node in (1, 2, 3):
        assert f"node {node} applies 2: b'hello'" in printed


def test_readme_paxos_block_runs_the_same_loop_and_applies_on_all_three_nodes():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    paxos_block = next((b for b in blocks if "paxos.PaxosNode" in b), None)
    assert paxos_block, "the README has a Multi-Paxos block"
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # defines run_ready_loops
        exec(compile(paxos_block, "README.md", "exec"), namespace)
    printed = out.getvalue()
    for node in (1, 2, 3):
        assert f"node {node} applies 1: b'hello'" in printed

"""A two-node launch simulated on this machine: two Composer launchers (one process each, gloo,
loopback only), as on two hosts. Killed mid-run and relaunched with the same command, it logs
exactly the losses of an uninterrupted run; a rank that dies takes the whole job down with a
message instead of leaving the other node waiting forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    PORT_TAKEN,
    REPO,
    free_port,
    read_losses,
    subprocess_env,
    tiny_recipe,
    write_recipe,
)

STEPS = 24  # long enough that the kill after step 6 never comes after the last step
CHECKPOINT_STEP = 4  # save_interval: a relaunch after step 6 resumes from the ba4 checkpoint
KILL_AFTER_STEP = 6  # past the checkpoint, so steps 4..6 or more run twice
LOOPBACK = "127.0.0.1"


def _recipe(corpus, run_dir: Path) -> Path:
    recipe = tiny_recipe(
        corpus,
        run_dir,
        max_duration=f"{STEPS}ba",
        save_interval=f"{CHECKPOINT_STEP}ba",
        autoresume=True,
        eval_loader=None,
        scheduler={"name": "constant_with_warmup", "t_warmup": "2ba"},
    )
    return write_recipe(recipe, run_dir / "recipe.yaml")


def _launch_nodes(recipe: Path, tag: str) -> list[subprocess.Popen]:
    """Both "nodes": launchers with node_rank 0 and 1, rendezvous on the loopback interface."""
    port = free_port()
    nodes = []
    for node in (0, 1):
        log = recipe.parent / f"{tag}-node{node}.log"
        cmd = [str(Path(sys.executable).with_name("composer")), "-n", "1", "--world_size", "2"]
        cmd += ["--node_rank", str(node), "--master_addr", LOOPBACK, "--master_port", str(port)]
        cmd += ["--stdout", str(recipe.parent / f"{tag}-rank{{rank}}.out")]
        cmd += ["--stderr", str(recipe.parent / f"{tag}-rank{{rank}}.err")]
        cmd += [str(REPO / "main.py"), str(recipe)]
        with log.open("w") as out:
            nodes.append(
                subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    env=subprocess_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed as a whole node
                )
            )
    return nodes


def _output(recipe: Path, tag: str) -> str:
    return "".join(p.read_text()[-3000:] for p in sorted(recipe.parent.glob(f"{tag}-*")))


def _run_nodes(recipe: Path, tag: str, timeout: float = 240) -> None:
    for attempt in range(3):
        codes = [node.wait(timeout=timeout) for node in _launch_nodes(recipe, f"{tag}{attempt}")]
        if codes == [0, 0]:
            return
        if PORT_TAKEN not in _output(recipe, f"{tag}{attempt}").lower():
            break
    raise AssertionError(f"nodes exited with {codes}:\n{_output(recipe, f'{tag}{attempt}')}")


def _last_step(metrics: Path) -> int:
    steps = read_losses(metrics) if metrics.exists() else {}
    return max(steps) if steps else -1


def _wait_for_step(nodes: list[subprocess.Popen], metrics: Path, step: int) -> None:
    deadline = time.monotonic() + 240
    while _last_step(metrics) < step:
        assert all(node.poll() is None for node in nodes), "a node exited early"
        assert time.monotonic() < deadline, f"no step {step} within the time limit"
        time.sleep(0.05)


def _kill_node(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGKILL)  # the launcher and its rank, as a lost host
    node.wait()


def _losses_as_logged(metrics: Path) -> dict[int, list[float]]:
    """step -> every training loss logged for it, in order (a replayed step appears twice)."""
    logged: dict[int, list[float]] = {}
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "loss/train/total" in row:
            logged.setdefault(int(row["step"]), []).append(float(row["loss/train/total"]))
    return logged


def test_two_nodes_killed_then_relaunched_replay_identical_losses(tiny_corpus, tmp_path):
    # One crash and one relaunch; the steps after the checkpoint run twice, before the kill
    # and after the resume, and must log bit-identical losses (model, optimizer, data
    # position, masks and RNG all restored on both nodes). A full uninterrupted reference is
    # compared on one node in test_resume.py; two more launches here would double the time.
    recipe = _recipe(tiny_corpus, tmp_path / "crash")
    metrics = recipe.parent / "metrics.jsonl"
    nodes = _launch_nodes(recipe, "crash")
    try:
        _wait_for_step(nodes, metrics, KILL_AFTER_STEP)
        assert (recipe.parent / "checkpoints" / "latest-rank0.pt").exists()
    finally:
        for node in nodes:
            _kill_node(node)
    killed_at = _last_step(metrics)
    latest = (recipe.parent / "checkpoints" / "latest-rank0.pt").resolve().name
    resumed_after = int(latest.split("-ba")[1].split("-")[0])  # ep0-ba4-rank0.pt -> 4
    # A step's metrics line is written when the next batch ends, and a checkpoint right after
    # that batch ends: a kill landing between the two leaves the latest checkpoint one step
    # ahead of the last line (nothing replays then; every step must still be logged once).
    assert resumed_after - 1 <= killed_at < STEPS - 1
    _run_nodes(recipe, "resume")  # the same command on both nodes: autoresume

    logged = _losses_as_logged(metrics)
    assert sorted(logged) == list(range(STEPS))
    replayed = {step: losses for step, losses in logged.items() if len(losses) > 1}
    assert sorted(replayed) == list(range(resumed_after, killed_at + 1))
    assert all(losses[0] == losses[1] for losses in replayed.values()), replayed


@pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs /proc/PID/task/TID/children to find the rank of a launcher",
)
def test_a_dead_rank_takes_the_job_down_with_a_message(tiny_corpus, tmp_path):
    recipe = _recipe(tiny_corpus, tmp_path / "run")
    nodes = _launch_nodes(recipe, "dies")
    try:
        _wait_for_step(nodes, recipe.parent / "metrics.jsonl", 1)
        children = Path(f"/proc/{nodes[1].pid}/task/{nodes[1].pid}/children").read_text()
        os.kill(int(children.split()[0]), signal.SIGKILL)  # node 1's rank dies, its launcher lives
        codes = [node.wait(timeout=120) for node in nodes]  # a hang fails here
    finally:
        for node in nodes:
            if node.poll() is None:
                _kill_node(node)
    assert all(code != 0 for code in codes), codes
    log1 = (recipe.parent / "dies-node1.log").read_text()
    assert "rank 1" in log1.lower() and "exit" in log1.lower(), log1[-2000:]
    log0 = (recipe.parent / "dies-node0.log").read_text()
    assert "error: another rank of this job is gone" in log0, log0[-2000:]

"""`bert14 batch` on an embedded 2-CPU Ray cluster and the tiny artifact: labels as the runtime gives
them, bad rows kept as errors, ids exactly once, nothing published unless complete."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bert14.errors import ArtifactError, InputError
from bert14.runtime import Classifier, LoadOptions

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -r requirements/ray.txt)")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import processes_with  # noqa: E402

from bert14.scale import BatchOptions, run_batch  # noqa: E402

TEXTS = ["湖人队击败勇士", "央行宣布降准", "新款手机发布", "", "股市今日大涨" * 40, "高考作文题目公布", "A [SEP] b"]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _read(output: Path) -> pa.Table:
    manifest = json.loads((output / "_bert14_batch.json").read_text(encoding="utf-8"))
    return pa.concat_tables([pq.read_table(output / name) for name in manifest["files"]])


def _corpus(path: Path, n: int) -> list[str]:
    texts = [f"{TEXTS[i % len(TEXTS)]} 第{i}条" for i in range(n)]
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return texts


def test_fp32_labels_and_scores_are_the_classifiers(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    texts = _corpus(tmp_path / "in.txt", 300)
    report = run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out",
                                    load=LoadOptions(precision="fp32"), probs=True, workers=2, threads_per_worker=1,
                                    progress=False))  # fmt: skip
    assert (report.rows, report.errors, report.workers, report.threads) == (300, 0, 2, 1)
    table = _read(tmp_path / "out").sort_by("id")
    assert table.column("id").to_pylist() == list(range(1, 301)), "line numbers as ids, each once"
    expected = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1).predict(texts)
    assert table.column("label").to_pylist() == [p.label for p in expected]
    assert table.column("tokens").to_pylist() == [p.tokens for p in expected]
    assert table.column("truncated").to_pylist() == [p.truncated for p in expected]
    probs = np.array([[row[k] for k in expected[0].probs] for row in table.column("probs").to_pylist()])
    np.testing.assert_allclose(probs, [list(p.probs.values()) for p in expected], atol=1e-6)
    assert table.column("error").null_count == 300


def test_long_texts_in_windows_get_the_classifiers_answers_and_their_window_counts(
    ray_local, tiny_artifact: Path, tmp_path: Path
) -> None:
    from bert14.long_text import LongText

    article = "记者从市交通委获悉，" + "地铁新线将于年底开通运营，沿线居民出行将更加便利。" * 60  # 1,510 tokens
    texts = [article, "湖人队击败勇士", article[:800], article * 3]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    load = LoadOptions(precision="fp32", long_text=LongText("windows", max_windows=8))
    run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", load=load, workers=1,
                           threads_per_worker=1, progress=False))  # fmt: skip
    table = _read(tmp_path / "out").sort_by("id")
    expected = Classifier.load(tiny_artifact, provider="cpu", threads=1, precision="fp32",
                               long_text=load.long_text).predict(texts)  # fmt: skip
    assert table.column("windows").to_pylist() == [p.windows for p in expected] == [5, 1, 3, 8]
    assert table.column("truncated").to_pylist() == [False, False, False, True]
    assert table.column("label").to_pylist() == [p.label for p in expected]
    np.testing.assert_allclose(table.column("score").to_numpy(), [p.score for p in expected], rtol=1e-6)


def test_bad_rows_get_an_error_and_the_rest_are_classified(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "体育新闻"}),
        json.dumps({"id": "b", "text": None}),
        json.dumps({"id": "c", "text": 42}),
        '{"id": "d", "text": "\\ud800 lone surrogate"}',
        json.dumps({"id": "e"}),
        json.dumps({"id": "f", "text": "财经新闻", "extra": [1, 2]}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.jsonl"), tmp_path / "out", progress=False,
                                    workers=1, threads_per_worker=1))  # fmt: skip
    rows = {r["id"]: r for r in _read(tmp_path / "out").to_pylist()}
    assert (report.rows, report.errors) == (6, 4)
    assert sorted(rows) == ["a", "b", "c", "d", "e", "f"]
    assert rows["a"]["label"] and rows["a"]["error"] is None and rows["f"]["error"] is None
    assert rows["b"]["label"] is None and "found null" in rows["b"]["error"]
    assert "found int" in rows["c"]["error"]
    assert "surrogate" in rows["d"]["error"]
    assert "no such key" in rows["e"]["error"]


def test_undecodable_lines_are_errors_with_their_line_numbers(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes("第一行\n".encode() + b"\xff\xfe broken\n" + "第三行\n".encode())
    run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", output_format="jsonl",
                           progress=False, workers=1, threads_per_worker=1))  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "out" / "part-00000.jsonl").read_text("utf-8").splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [1, 2, 3]
    assert "expected UTF-8 text in line 2" in by_id[2]["error"] and by_id[1]["error"] is None


def test_csv_and_parquet_with_id_and_pair_columns(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    table = pa.table({"doc": ["x1", "x2", "x3"], "q": ["问", "问题", "问题三"], "a": ["答", "答案", "回答"]})
    pq.write_table(table, tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_bytes(b"doc,q,a\nx1,\xe9\x97\xae,ok\nx2,\xff,ok\n")
    for name in ("in.parquet", "in.csv"):
        out = tmp_path / f"out-{name}"
        run_batch(BatchOptions(tiny_artifact, str(tmp_path / name), out, text_column="q", pair_column="a",
                               id_column="doc", progress=False, workers=1, threads_per_worker=1))  # fmt: skip
        rows = {r["doc"]: r for r in _read(out).to_pylist()}
        assert "q" not in next(iter(rows.values())), "texts are not copied into the output"
        assert rows["x1"]["error"] is None and rows["x1"]["label"]
    assert "expected UTF-8" in rows["x2"]["error"]


def test_duplicate_ids_are_refused_before_the_job(tiny_artifact: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"id": i % 3, "text": "新闻"}) for i in range(5)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected every id in 'id' once, found 2 repeated"):
        run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.jsonl"), tmp_path / "out", progress=False))
    assert not (tmp_path / "out").exists()


def test_an_output_directory_of_someone_elses_files_is_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    _corpus(tmp_path / "in.txt", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("mine")
    with pytest.raises(InputError, match="expected an empty directory or an earlier bert14 batch output"):
        run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", progress=False))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.csv"]


def test_an_input_inside_the_output_directory_is_refused(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    _corpus(tmp_path / "in.txt", 5)
    out = tmp_path / "out"
    run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), out, output_format="jsonl", progress=False,
                           workers=1, threads_per_worker=1))  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(InputError, match="lies inside --output"):  # its labels, classified again, into itself
        run_batch(BatchOptions(tiny_artifact, str(out / "part-00000.jsonl"), out, text_column="label",
                               progress=False))  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_mid_job_removes_the_stage_and_keeps_the_previous_output(tiny_artifact: Path, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "bert14"
    _corpus(tmp_path / "small.txt", 10)
    out = tmp_path / "out"
    first = subprocess.run([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "small.txt"),
                            "--output", str(out), "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _corpus(tmp_path / "big.txt", 150_000)
    job = subprocess.Popen([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "big.txt"),
                            "--output", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob(".bert14-stage-*/part-*")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before it could be interrupted"
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 143
    stderr = job.stderr.read() if job.stderr else ""
    assert stderr.strip().splitlines()[-1].startswith("bert14 batch: terminated (SIGTERM)"), stderr[-1000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "no stage left, the earlier output kept"


def test_an_address_where_no_cluster_answers_is_one_line_at_once(tiny_artifact: Path, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "bert14"
    _corpus(tmp_path / "in.txt", 3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    done = subprocess.run([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "in.txt"), "--output",
                           str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.strip().splitlines() == [
        f"bert14 batch: error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); "
        "start one with `ray start --head` or check the address"
    ]
    assert not (tmp_path / "out").exists()


def test_a_layout_that_cannot_be_placed_is_refused(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    _corpus(tmp_path / "in.txt", 3)
    with pytest.raises(InputError, match="room for 2 such worker"):
        run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", workers=3,
                               threads_per_worker=1, progress=False))  # fmt: skip
    with pytest.raises(InputError, match="room for 0 such worker"):
        run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", threads_per_worker=3,
                               progress=False))  # fmt: skip


def test_a_failed_job_leaves_the_previous_output_intact(ray_local, tiny_artifact: Path, tmp_path: Path) -> None:
    _corpus(tmp_path / "in.txt", 50)
    out = tmp_path / "out"
    run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), out, progress=False, workers=1,
                           threads_per_worker=1))  # fmt: skip
    (out / "notes.md").write_text("the user's")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    model = broken / "model.int8.onnx"
    model.write_bytes(model.read_bytes()[:-64] + bytes(64))  # the bytes change, the manifest does not
    with pytest.raises(ArtifactError, match=r"the job failed after 0 of 50 rows: .*model.int8.onnx.*unchanged"):
        run_batch(BatchOptions(broken, str(tmp_path / "in.txt"), out, progress=False, workers=1,
                               threads_per_worker=1))  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_killed_worker_is_restarted_and_every_row_lands_once(ray_local, tiny_artifact, tmp_path) -> None:
    n = 30_000
    _corpus(tmp_path / "in.txt", n)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pids = processes_with(b"MapBatches(_Worker)")
            if pids and list((tmp_path / "out").glob(".bert14-stage-*/part-*")):
                time.sleep(0.5)  # some rows are written: the kill lands mid-job
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    report = run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", progress=False,
                                    workers=2, threads_per_worker=1, rows_per_file=5000))  # fmt: skip
    killer.join()
    assert killed, "no worker process was found to kill"
    ids = _read(tmp_path / "out").column("id").to_numpy()
    assert report.rows == n and len(ids) == n and np.array_equal(np.sort(ids), np.arange(1, n + 1))


def test_cli_batch_runs_a_job_and_reports_bad_input_in_one_line(tiny_artifact: Path, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "bert14"
    _corpus(tmp_path / "in.txt", 20)
    bad = subprocess.run([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "nothing-*.txt"),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "expected input files" in bad.stderr
    done = subprocess.run([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "in.txt"),
                           "--output", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("classified 20 rows (0 with an error)")
    assert _read(tmp_path / "out").num_rows == 20


def _jsonl(path: Path, ids: list) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": "新闻"}) + "\n" for i in ids), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([1, "1"], r"row 2: id '1' in 'id' is a string, earlier rows' ids are an integer"),
        ([*range(1500), "x"], r"row 1501: id 'x' .* expected one id type"),  # past the 1,024-row block boundary
        ([1, 2**64], r"row 2: id 18446744073709551616 in 'id' does not fit 64 bits"),
        ([1, -(2**63) - 1], r"does not fit 64 bits"),
        ([1, [2]], r"row 2: expected a string or integer id in 'id', found list"),
        ([1, None], r"row 2: expected a string or integer id in 'id', found null"),
        ([1, True], r"found bool"),
    ],
)
def test_ids_of_a_bad_or_mixed_type_are_refused_in_the_id_pass(tmp_path: Path, ids, message: str) -> None:
    from bert14.scale.sources import id_hashes, open_input

    with pytest.raises(InputError, match=message):
        id_hashes(open_input(str(_jsonl(tmp_path / "in.jsonl", ids))))


def test_a_type_change_across_files_and_list_ids_in_parquet_are_refused(tmp_path: Path) -> None:
    from bert14.scale.sources import id_hashes, open_input

    (tmp_path / "jsonl").mkdir()
    _jsonl(tmp_path / "jsonl" / "a.jsonl", [1, 2])
    _jsonl(tmp_path / "jsonl" / "b.jsonl", ["3", "4"])
    with pytest.raises(InputError, match=r"b.jsonl: ids in 'id' are strings, .*a.jsonl's are integers"):
        id_hashes(open_input(str(tmp_path / "jsonl")))
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32()), "text": ["a", "b"]}), tmp_path / "pq" / "a.parquet")
    pq.write_table(pa.table({"id": ["3", "4"], "text": ["c", "d"]}), tmp_path / "pq" / "b.parquet")
    with pytest.raises(InputError, match=r"ids in 'id' are strings"):
        id_hashes(open_input(str(tmp_path / "pq")))
    pq.write_table(pa.table({"id": [[1], [2]], "text": ["a", "b"]}), tmp_path / "list.parquet")
    with pytest.raises(InputError, match=r"expected ids in 'id' as strings or integers, found list<"):
        open_input(str(tmp_path / "list.parquet"))
    big = pa.array([1, 2**63 + 5], pa.uint64())
    pq.write_table(pa.table({"id": big, "text": ["a", "b"]}), tmp_path / "u64.parquet")
    with pytest.raises(InputError, match="does not fit 64 bits"):
        id_hashes(open_input(str(tmp_path / "u64.parquet")))


def test_mixed_ids_through_the_cli_are_one_line_exit_2_before_ray(tiny_artifact: Path, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "bert14"
    _jsonl(tmp_path / "in.jsonl", [*range(1100), "1100"])
    bad = subprocess.run([str(cli), "batch", str(tiny_artifact), "--input", str(tmp_path / "in.jsonl"),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "expected one id type" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "out").exists()


def test_a_csv_cell_over_a_megabyte_is_read(tmp_path: Path) -> None:
    from bert14.scale.sources import id_hashes, open_input, read_blocks

    long_text = "长" * 600_000  # 1.8 MB of UTF-8, past pyarrow's default 1 MB block
    (tmp_path / "in.csv").write_text(f'id,text\na,短\nb,"{long_text}"\nc,尾\n', encoding="utf-8")
    spec = open_input(str(tmp_path / "in.csv"))
    assert len(id_hashes(spec)) == 3
    rows = [row for block in read_blocks(spec, 0) for row in block.to_pylist()]
    assert [(r["id"], r["text"]) for r in rows] == [("a", "短"), ("b", long_text), ("c", "尾")]


def test_a_roberta_artifact_gets_the_classifiers_answers(ray_local, family_artifacts, tmp_path: Path) -> None:
    """A family with other inputs (no token types) and another pad id (<pad> = 1), through Ray Data."""
    _, artifact = family_artifacts["roberta"]
    texts = _corpus(tmp_path / "in.txt", 60)
    run_batch(BatchOptions(artifact, str(tmp_path / "in.txt"), tmp_path / "out", load=LoadOptions(precision="int8"),
                           workers=1, threads_per_worker=1, progress=False))  # fmt: skip
    table = _read(tmp_path / "out").sort_by("id")
    expected = Classifier.load(artifact, precision="int8", provider="cpu", threads=1).predict(texts)
    assert table.column("label").to_pylist() == [p.label for p in expected]
    assert table.column("truncated").to_pylist() == [p.truncated for p in expected]

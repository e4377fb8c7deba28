"""The simqa command: output formats, exit codes, and failed builds that leave the index alone."""

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from search.cli import main
from tests.conftest import ROOT, SEED_000, SEEDS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_similar_text_panel_looks_like_the_seed_pages(capsys, seeds_index):
    code, out, _ = run(capsys, "similar", SEED_000, "--index", str(seeds_index))
    assert code == 0
    blocks = out.split("\n\n")
    assert blocks[0] == "Similar Q&A"
    assert len(blocks) == 5
    title, question, doctor, reply, more = blocks[1].strip().split("\n")
    assert question.endswith("...") and len(question) <= 203
    assert doctor.startswith("Dr. ") and " reply Neurology" in doctor
    assert more.startswith(f"[Read More] {title} [")


def test_search_json_and_list(capsys, seeds_index):
    code, out, _ = run(capsys, "search", "head tremor", "--index", str(seeds_index), "-k", "2", "--format", "json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2
    assert set(hits[0]) >= {"id", "title", "score", "scores", "question_excerpt", "reply_excerpt", "doctor"}
    code, out, _ = run(capsys, "list", "--index", str(seeds_index))
    assert code == 0 and f"{SEED_000}\tInvoluntary muscle contractions?" in out.splitlines()


def test_explain_in_text_and_json(capsys, seeds_index):
    code, out, _ = run(capsys, "search", "head tremor", "--index", str(seeds_index), "-k", "2", "--explain")
    assert code == 0 and out.count("  score ") == 2
    assert all(signal in out for signal in ("bm25_question", "dense_question", "dense_reply"))
    code, out, _ = run(capsys, "similar", SEED_000, "--index", str(seeds_index), "--explain", "--format", "json")
    hits = json.loads(out)
    assert code == 0 and all(sum(p["contribution"] for p in h["explain"].values()) == pytest.approx(h["score"]) for h in hits)


def test_unknown_id_is_one_clear_error_line(capsys, seeds_index):
    code, out, err = run(capsys, "similar", "no-such-id", "--index", str(seeds_index))
    assert (code, out) == (1, "")
    assert err == "simqa: error: unknown consultation id 'no-such-id'\n"


def test_failed_build_leaves_the_existing_index_untouched(capsys, tmp_path):
    index = tmp_path / "index"
    assert run(capsys, "index", str(SEEDS), "--index", str(index), "--quiet")[0] == 0
    before = sorted(p.name for p in index.iterdir()), (index / "CURRENT").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "knee?"}\n{"id": "b"}\n', encoding="utf-8")

    code, _, err = run(capsys, "index", str(SEEDS), str(bad), "--index", str(index), "--quiet")
    assert code == 1
    assert err == f"simqa: error: {bad}:2: field 'question': missing (required)\n"
    assert (sorted(p.name for p in index.iterdir()), (index / "CURRENT").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "index"]  # no half-written build left

    code, out, err = run(capsys, "index", str(SEEDS), str(bad), "--index", str(index), "--skip-bad", "--quiet")
    assert code == 0
    assert f"simqa: skipped: {bad}:2: field 'question'" in err and "skipped 1 bad input(s)" in err
    assert "indexed 10 consultations" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "index"]


def test_refuses_to_overwrite_a_directory_that_is_not_an_index(capsys, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "index", str(SEEDS), "--index", str(tmp_path), "--quiet")
    assert code == 1 and "is not a simqa index; refusing to replace it" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_usage_errors_exit_2(capsys, seeds_index):
    with pytest.raises(SystemExit) as exit:
        main(["search", "knee", "--index", str(seeds_index), "-k", "0"])
    assert exit.value.code == 2
    assert "k must be at least 1" in capsys.readouterr().err


def test_bench_relevance_and_panels_commands(capsys, tmp_path, seeds_index):
    (tmp_path / "q.tsv").write_text("q1\twrist twitches after lifting heavy objects\n")
    (tmp_path / "qrels").write_text("q1 0 xfb36333b9b8c8bd1 4\n")
    code, out, _ = run(capsys, "bench", "relevance", "--index", str(seeds_index), "--queries", str(tmp_path / "q.tsv"),
                       "--qrels", str(tmp_path / "qrels"), "--methods", "bm25,default", "--out", str(tmp_path / "out"))
    assert code == 0
    assert "| bm25 | **3.000** |" in out and "| default | " in out  # best values in bold
    assert (tmp_path / "out" / "bm25.run").is_file()
    code, out, err = run(capsys, "bench", "relevance", "--index", str(seeds_index), "--queries", str(tmp_path / "q.tsv"),
                         "--qrels", str(tmp_path / "qrels"), "--methods", "magic", "--out", str(tmp_path / "out"))
    assert code == 1 and "unknown methods magic" in err
    code, out, _ = run(capsys, "bench", "panels", "--index", str(seeds_index))
    assert code == 0 and f"{SEED_000}\t4/4" in out and out.rstrip().endswith("of 8 panel links")


def test_panels_precomputes_every_panel_as_similar_would(capsys, tmp_path, seeds_index, searcher):
    out = tmp_path / "panels.jsonl"
    code, stdout, _ = run(capsys, "panels", "--index", str(seeds_index), "--out", str(out), "--batch", "4", "--quiet")
    assert code == 0 and "wrote 9 panels" in stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["id"] for p in lines] == searcher.ids()
    for panel in lines:
        expected = searcher.similar(panel["id"], k=4)
        assert [h["id"] for h in panel["panel"]] == [h.id for h in expected]
    assert not (tmp_path / "panels.jsonl.partial").exists()


def test_panels_output_never_lands_inside_an_index_or_nowhere(capsys, tmp_path, seeds_index):
    for out in (seeds_index / "CURRENT", seeds_index / "gen-x" / "p.jsonl", tmp_path / "missing" / "p.jsonl", tmp_path):
        code, stdout, err = run(capsys, "panels", "--index", str(seeds_index), "--out", str(out), "--quiet")
        assert code == 1 and stdout == "" and err.startswith("simqa: error: --out ")
    assert (seeds_index / "CURRENT").read_text().startswith("gen-")


def test_delete_counts_each_id_once_and_add_of_the_same_says_unchanged(capsys, tmp_path):
    export = tmp_path / "a.jsonl"
    export.write_text('{"id": "a", "question": "knee pain when running"}\n{"id": "b", "question": "head tremor"}\n'
                      '{"id": "c", "question": "wrist twitch"}\n')
    index = str(tmp_path / "index")
    assert run(capsys, "index", str(export), "--index", index, "--quiet")[0] == 0
    code, out, _ = run(capsys, "add", str(export), "--index", index, "--quiet")
    assert code == 0 and out.strip().splitlines() == ["unchanged: the index already holds these 3 consultations as read (3 in all)"]
    code, out, _ = run(capsys, "delete", "a", "a", "--index", index, "--quiet")
    assert code == 0 and out.strip() == "deleted 1; the index holds 2 consultations"


def test_a_closed_pipe_ends_quietly(seeds_index):
    """`simqa search ... | head -1`: no BrokenPipeError traceback, exit 0."""
    script = f"import sys; from search.cli import main; sys.exit(main(['list', '--index', {str(seeds_index)!r}]))"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.read(1)
    process.stdout.close()  # the reader goes away after one byte
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and b"Traceback" not in err


def test_an_index_that_is_a_file_or_missing_is_one_clear_error_and_leaves_nothing(capsys, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not an index")
    export = tmp_path / "a.jsonl"
    export.write_text('{"id": "a", "question": "knee pain"}\n')
    for argv in (["search", "knee", "--index", str(afile)], ["list", "--index", str(afile)],
                 ["add", str(export), "--index", str(afile), "--quiet"],
                 ["add", str(export), "--index", str(tmp_path / "new" / "ix"), "--quiet"],
                 ["delete", "a", "--index", str(tmp_path / "other"), "--quiet"]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "" and "not a simqa index" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "notes.txt"]


def test_version_and_help_show_defaults(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("simqa 0.")
    for argv, default in ((["search", "--help"], "(default: hybrid)"), (["search", "--help"], "(default: text)"),
                          (["serve", "--help"], "(default: 8000)")):
        with pytest.raises(SystemExit):
            main(argv)
        assert default in " ".join(capsys.readouterr().out.split())


def test_serve_says_where_it_listens_once_it_does(seeds_index):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = f"import sys; from search.cli import main; sys.exit(main(['serve', '--index', {str(seeds_index)!r}, '--port', '{port}']))"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("simqa serve did not answer /healthz within 120 s")
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


def test_bytes_that_are_not_utf8_in_a_query_are_a_usage_error(seeds_index):
    process = subprocess.run([sys.executable, "-m", "search.cli", "search", b"knee \xff pain", "--index", str(seeds_index)],
                             capture_output=True, cwd=ROOT, timeout=120)
    assert process.returncode == 2 and b"not valid UTF-8" in process.stderr and b"Traceback" not in process.stderr


def test_text_output_never_sends_control_characters_to_the_terminal(capsys, tmp_path):
    export = tmp_path / "hostile.jsonl"
    records = [{"id": "evil\u202eid", "title": "\x1b[2JCleared", "question": "Dr. Who\rOverwritten twitch", "doctor": "\x1b]0;t\x07X",
                "reply": "back\x08space twitch"},
               {"id": "plain", "title": "Twitch", "question": "my eyelid twitch"}]
    export.write_text("".join(json.dumps(r) + "\n" for r in records))
    index = str(tmp_path / "index")
    assert run(capsys, "index", str(export), "--index", index, "--quiet")[0] == 0
    for argv in (["search", "twitch", "--index", index], ["similar", "plain", "--index", index], ["list", "--index", index]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "evil\\u202eid" in out
        assert not any(c in out for c in "\x1b\r\x08\x07\u202e")
    code, out, _ = run(capsys, "search", "twitch", "--index", index, "--format", "json")
    hits = json.loads(out)  # controls were stripped where the text entered; the bidi override stays, escaped by JSON
    assert {h["title"] for h in hits} >= {"[2JCleared"} and "evil\u202eid" in {h["id"] for h in hits}


def test_a_read_only_index_is_one_clear_error(capsys, tmp_path, monkeypatch):
    """As root (CI) permissions do not bite, so the refusal the file system gives is simulated."""
    export = tmp_path / "a.jsonl"
    export.write_text('{"id": "a", "question": "knee pain"}\n')
    index = tmp_path / "index"
    assert run(capsys, "index", str(export), "--index", str(index), "--quiet")[0] == 0

    def refuse(directory):
        raise PermissionError(13, "Permission denied", str(directory / ".lock"))

    monkeypatch.setattr("index.generations.writer_lock", refuse)
    code, out, err = run(capsys, "delete", "a", "--index", str(index), "--quiet")
    assert (code, out) == (1, "") and err == f"simqa: error: {index / '.lock'}: Permission denied\n"

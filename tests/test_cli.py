"""The command line as a new user meets it: bad input gets one clear line on stderr and a non-zero exit, before
any model is loaded."""

import json
import subprocess
import sys

import pytest

from deepmath_lib.cli import main
from deepmath_lib.paths import REPO_ROOT


def _deepmath(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepmath_lib.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_eval_on_rows_without_answers_stops_before_loading_a_model(tmp_path, capsys):
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i}+{i}?"}) + "\n" for i in range(3)))
    rc = main(
        ["eval", "--datasets", str(data), "--configs", "baseline", "--results-root", str(tmp_path / "r")]
    )
    out, err = capsys.readouterr()
    assert rc == 2
    assert "no problems with an answer" in err and "questions.jsonl" in err
    assert "weights:" not in out and not (tmp_path / "r").exists()  # nothing loaded, nothing written


def test_eval_names_a_missing_dataset_not_a_missing_model(tmp_path, capsys):
    rc = main(["eval", "--profile", "smol", "--datasets", str(tmp_path / "nope.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jsonl" in err and "no trained model" not in err


def test_eval_refuses_identical_greedy_samples(capsys):
    rc = main(["eval", "--profile", "smol", "--samples", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and "greedily" in err and "--samples 1" in err


@pytest.mark.parametrize("timeout", ["-1", "0", "nan"])
def test_exec_rejects_a_non_positive_timeout(timeout):
    res = _deepmath("exec", "--timeout", timeout, stdin="print(1)")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: timeout must be a positive number")
    assert res.stdout == ""


def test_exec_syntax_error_shows_the_snippet_not_our_internals():
    res = _deepmath("exec", stdin="x = (\n")
    assert res.returncode == 0  # the snippet failing is data, not a command failure
    assert "SyntaxError" in res.stdout and "never closed" in res.stdout
    assert "compile(" not in res.stdout and "Traceback" not in res.stdout and ".py" not in res.stdout


def test_warnings_are_one_line_without_our_file_paths():
    res = _deepmath("exec", stdin="print(6*7)")
    assert res.stdout.strip() == "42"
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    assert len(lines) == len(set(lines))  # each at most once
    assert "deepmath_lib" not in res.stderr and ".py:" not in res.stderr


class _RefusingServer:
    """A loopback stand-in for vLLM's OpenAI server that serves no model: every completion request gets vLLM's 404."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                name = "the requested model"
                body = json.dumps(
                    {
                        "error": {
                            "message": f"The model `{name}` does not exist.",
                            "type": "NotFoundError",
                            "code": 404,
                        }
                    }
                ).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_solve_through_a_server_that_lacks_the_model_names_it_and_what_to_do(capsys):
    """A server that does not serve the model asked for (e.g. a local GRPO adapter it was not started with): solve
    stops with the server's own message and the two ways out, instead of a bare HTTP error or `answer: none`."""
    from deepmath_lib.agent import solve_main

    with _RefusingServer() as server:
        rc = solve_main("What is 2+3?", profile="nano", backend="openai", base_url=server.url, model="base")
    out = capsys.readouterr()
    assert rc == 1
    assert out.out.strip().splitlines()[-1] == "answer: none"
    assert "HTTP 404" in out.err and "does not exist" in out.err
    assert "--lora-modules" in out.err and "--model base" in out.err


def test_solve_with_no_server_says_it_cannot_reach_it(capsys):
    import socket

    from deepmath_lib.agent import solve_main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = solve_main(
        "What is 2+3?", profile="nano", backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="base"
    )
    out = capsys.readouterr()
    assert rc == 1 and "cannot reach the server" in out.err and str(port) in out.err

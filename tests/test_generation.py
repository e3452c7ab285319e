"""The generating-model backends: real HTTP to a local OpenAI-compatible server, and a local tiny chat model."""

from __future__ import annotations

import copy
import socket

import huggingface_hub
import huggingface_hub.constants
import pytest
from chat_server import Canned, ChatServer

from deita_hf.errors import ConfigError
from deita_hf.scorers import generation
from deita_hf.scorers.generation import (
    GenerationError,
    MalformedReply,
    OpenAIChat,
    Reply,
    TransformersChat,
    generate_checked,
    request_key,
)

HELLO = [{"role": "user", "content": "Say hello"}]


def echo(messages, seen):
    return "echo: " + messages[-1]["content"]


@pytest.fixture
def no_sleep(monkeypatch):
    """Record the back-off delays instead of waiting them out."""
    delays: list[float] = []
    monkeypatch.setattr(generation, "_sleep", delays.append)
    return delays


def chat(server, tmp_path=None, **kwargs):
    kwargs.setdefault("progress", False)
    return OpenAIChat("test-model", base_url=server.url, cache_dir=tmp_path, **kwargs)


def test_request_carries_model_messages_sampling_params_and_key():
    with ChatServer(echo) as server:
        reply = chat(server, api_key="sk-test", temperature=0.3, top_p=0.9, max_new_tokens=17).generate([HELLO])[0]
    assert reply == Reply("echo: Say hello", finish_reason="stop")
    assert server.requests == [
        {"model": "test-model", "messages": HELLO, "temperature": 0.3, "top_p": 0.9, "max_tokens": 17}
    ]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_base_url_and_key_come_from_the_environment(monkeypatch):
    with ChatServer(echo) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        backend = OpenAIChat("test-model", progress=False)
        assert backend.generate([HELLO])[0].text == "echo: Say hello"
    assert backend.url == server.url + "/chat/completions"
    assert server.headers[0]["Authorization"] == "Bearer sk-from-env"


def test_a_misspelt_sampling_parameter_is_an_error():
    with pytest.raises(TypeError, match=r"unknown sampling parameter\(s\) \['temprature'\]"):
        OpenAIChat("test-model", base_url="http://127.0.0.1:9").generate([HELLO], temprature=0.0)


def sent_headers(server):
    """The header names of each request, lower-cased (HTTP header names are case-insensitive)."""
    return [{name.lower(): value for name, value in headers.items()} for headers in server.headers]


def test_no_key_sends_no_authorization_header_not_even_the_saved_hf_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_saved_secret")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert huggingface_hub.get_token() == "hf_saved_secret"  # a client that falls back to it would send it
    with ChatServer(echo) as server:
        assert chat(server).generate([HELLO])[0].text == "echo: Say hello"
    assert len(server.headers) == 1 and "authorization" not in sent_headers(server)[0]


def test_a_key_is_sent_as_bearer_instead_of_the_saved_hf_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_saved_secret")
    with ChatServer(echo) as server:
        chat(server, api_key="sk-test").generate([HELLO])
    assert sent_headers(server)[0]["authorization"] == "Bearer sk-test"


def test_hub_offline_mode_does_not_block_the_endpoint(monkeypatch):
    # HF_HUB_OFFLINE=1 is about the Hub; a local vLLM server must still answer.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with ChatServer(echo) as server:
        assert chat(server).generate([HELLO])[0].text == "echo: Say hello"


def test_a_base_url_without_scheme_is_an_error():
    with pytest.raises(ConfigError, match=r"base_url must start with http:// or https://, got 'localhost:8000/v1'"):
        OpenAIChat("test-model", base_url="localhost:8000/v1")


def test_the_key_is_never_shown():
    backend = OpenAIChat("test-model", base_url="http://127.0.0.1:9", api_key="sk-secret")
    assert "sk-secret" not in repr(backend)


def test_replies_keep_the_request_order_under_concurrency():
    def slow_first(messages, seen):
        number = int(messages[0]["content"])
        return Canned(f"reply {number}", delay=0.2 if number < 3 else 0.0)

    conversations = [[{"role": "user", "content": str(i)}] for i in range(12)]
    with ChatServer(slow_first) as server:
        replies = chat(server, concurrency=6).generate(conversations)
    assert [r.text for r in replies] == [f"reply {i}" for i in range(12)]


def test_a_timeout_is_retried_with_exponential_backoff(no_sleep):
    def late_twice(messages, seen):
        return Canned("finally", delay=1.0 if seen < 2 else 0.0)

    with ChatServer(late_twice) as server:
        backend = chat(server, timeout=0.2, max_retries=3, backoff=0.5)
        reply = backend.generate([HELLO])[0]
    assert reply.text == "finally"
    assert len(server.requests) == 3
    assert no_sleep == [0.5, 1.0]
    assert backend.stats["retries"] == 2


def test_a_request_that_keeps_timing_out_is_reported_and_not_cached(tmp_path, no_sleep):
    def never(messages, seen):
        return Canned("too late", delay=1.0)

    with ChatServer(never) as server:
        backend = chat(server, tmp_path, timeout=0.2, max_retries=2, backoff=0.1, max_backoff=0.15)
        reply = backend.generate([HELLO])[0]
        assert reply.text is None
        assert "no answer within timeout=0.2 s" in reply.error and "gave up after 3 attempts" in reply.error
        assert len(server.requests) == 3
        assert no_sleep == [0.1, 0.15]
        assert backend.stats["failures"] == 1
        # Not cached: asking again sends the request again.
        backend.generate([HELLO])
        assert len(server.requests) == 6


def test_server_errors_and_rate_limits_are_retried(no_sleep):
    def flaky(messages, seen):
        if seen == 0:
            return Canned("overloaded", status=503)
        if seen == 1:
            return Canned("slow down", status=429, headers={"Retry-After": "2"})
        return "ok"

    with ChatServer(flaky) as server:
        reply = chat(server, backoff=0.25).generate([HELLO])[0]
    assert reply.text == "ok"
    # The second wait honours Retry-After (2 s) over the back-off (0.5 s).
    assert no_sleep == [0.25, 2.0]


def test_retry_after_is_capped_at_max_backoff(no_sleep):
    def limited(messages, seen):
        return Canned("slow down", status=429, headers={"Retry-After": "120"}) if seen == 0 else "ok"

    with ChatServer(limited) as server:
        reply = chat(server, backoff=0.25, max_backoff=5.0).generate([HELLO])[0]
    assert reply.text == "ok" and no_sleep == [5.0]


def test_a_refused_connection_is_retried_then_reported(no_sleep):
    with socket.socket() as free:  # a port that nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    backend = OpenAIChat(
        "test-model", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.5, progress=False
    )
    reply = backend.generate([HELLO])[0]
    assert reply.text is None
    assert reply.error.startswith(f"http://127.0.0.1:{port}/v1/chat/completions: connection error: ")
    assert reply.error.endswith("(gave up after 3 attempts)")
    assert no_sleep == [0.5, 1.0]
    assert backend.stats == {"requests": 3, "cache_hits": 0, "retries": 2, "failures": 1}


def test_a_client_error_raises_at_once_without_the_key():
    with ChatServer(lambda messages, seen: Canned("invalid api key", status=401)) as server:
        backend = chat(server, api_key="sk-secret")
        with pytest.raises(GenerationError, match="HTTP 401: invalid api key.*check the API key") as raised:
            backend.generate([HELLO])
    assert "sk-secret" not in str(raised.value)
    assert len(server.requests) == 1


def test_an_answer_that_is_not_a_chat_completion_is_retried_then_reported(no_sleep):
    with ChatServer(lambda messages, seen: Canned(raw=b"<html>proxy error</html>")) as server:
        reply = chat(server, max_retries=1).generate([HELLO])[0]
    assert reply.text is None and "did not answer with a chat completion" in reply.error
    assert len(server.requests) == 2


def test_the_cache_makes_a_rerun_send_no_request(tmp_path):
    conversations = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    with ChatServer(echo) as server:
        first = chat(server, tmp_path).generate(conversations)
        rerun = chat(server, tmp_path)
        second = rerun.generate(conversations)
    assert len(server.requests) == 5
    assert [r.text for r in second] == [r.text for r in first]
    assert all(r.cached for r in second) and rerun.stats["cache_hits"] == 5 and rerun.stats["requests"] == 0


def test_the_cache_key_covers_model_messages_and_sampling_params():
    params = {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 10}
    key = request_key("m", HELLO, params)
    assert key == request_key("m", [dict(HELLO[0])], dict(params))
    assert key != request_key("other", HELLO, params)
    assert key != request_key("m", [{"role": "user", "content": "Say hello!"}], params)
    assert key != request_key("m", HELLO, {**params, "temperature": 0.0})


def test_generate_checked_retries_a_malformed_reply_with_what_was_wrong():
    def answer(messages, seen):
        return "42" if len(messages) > 1 else "forty-two"

    def parse(reply, index):
        if not reply.text.isdigit():
            raise MalformedReply("answer with digits only")
        return int(reply.text)

    with ChatServer(answer) as server:
        (outcome,) = generate_checked(chat(server), [HELLO], parse, retries=2)
    assert outcome.ok and outcome.value == 42 and outcome.replies == ["forty-two", "42"]
    retry = server.requests[1]["messages"]
    assert retry[:2] == [HELLO[0], {"role": "assistant", "content": "forty-two"}]
    assert retry[2]["content"].startswith("Your reply could not be used: answer with digits only.")


def test_generate_checked_reports_a_reply_that_stays_malformed():
    def parse(reply, index):
        raise MalformedReply("never right")

    with ChatServer(echo) as server:
        (outcome,) = generate_checked(chat(server), [HELLO], parse, retries=1)
    assert outcome.value is None and outcome.problem == "malformed reply: never right"
    assert len(outcome.replies) == 2 and len(server.requests) == 2


# -- local transformers chat model --------------------------------------------------------------------------------
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture
def tiny_chat(byte_tokenizer, tiny_llama):
    # A copy: the session tokenizer stays as the other tests expect it (no chat template, right padding).
    tokenizer = copy.deepcopy(byte_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tiny_llama, tokenizer


def test_local_batched_generation_equals_one_at_a_time(tiny_chat):
    model, tokenizer = tiny_chat
    conversations = [[{"role": "user", "content": text}] for text in ("Hi", "What is the capital of France?", "Why?")]
    batched = TransformersChat(model, tokenizer, batch_size=3, temperature=0.0, max_new_tokens=6, progress=False)
    single = TransformersChat(model, tokenizer, batch_size=1, temperature=0.0, max_new_tokens=6, progress=False)
    texts = [r.text for r in batched.generate(conversations)]
    assert texts == [r.text for r in single.generate(conversations)]
    assert all(isinstance(t, str) for t in texts) and len(set(texts)) > 1


def test_local_replies_are_cached(tiny_chat, tmp_path):
    model, tokenizer = tiny_chat
    first = TransformersChat(model, tokenizer, temperature=0.0, max_new_tokens=4, cache_dir=tmp_path, progress=False)
    text = first.generate([HELLO])[0].text
    again = TransformersChat(model, tokenizer, temperature=0.0, max_new_tokens=4, cache_dir=tmp_path, progress=False)
    reply = again.generate([HELLO])[0]
    assert reply.text == text and reply.cached and again.stats["requests"] == 0


def test_a_local_model_without_chat_template_is_an_error(byte_tokenizer, tiny_llama):
    backend = TransformersChat(tiny_llama, byte_tokenizer, progress=False)
    with pytest.raises(GenerationError, match="has no chat template"):
        backend.generate([HELLO])


def test_a_local_chat_model_leaves_the_tokenizer_passed_in_as_it_was(tiny_chat):
    model, tokenizer = tiny_chat
    tokenizer.padding_side = "right"
    tokenizer.pad_token = None
    before = (tokenizer.padding_side, tokenizer.pad_token, tokenizer.pad_token_id, len(tokenizer))
    chat = TransformersChat(model, tokenizer, batch_size=2, temperature=0.0, max_new_tokens=3, progress=False)
    conversations = [HELLO, [{"role": "user", "content": "A longer question here?"}]]
    texts = [r.text for r in chat.generate(conversations)]
    assert (tokenizer.padding_side, tokenizer.pad_token, tokenizer.pad_token_id, len(tokenizer)) == before
    assert before[2] is None and all(isinstance(text, str) for text in texts)
    single = TransformersChat(model, tokenizer, batch_size=1, temperature=0.0, max_new_tokens=3, progress=False)
    assert [r.text for r in single.generate(conversations)] == texts

"""model/matchers.py against Alertmanager itself: what it parses, writes and matches, amtool agrees with."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from model.facts.matchers import Matcher, parse_matcher

MATCHERS = ['severity="critical"', "service=~backups.*", 'alertname!~"Latency.*"', r'summary!="say \"hi\""',
            r'path=~"a\.b"', 'team = ""', "job!=pbs-exporter"]
LABEL_SETS = [{"severity": "critical", "service": "backups-offsite", "summary": 'say "hi"', "path": "a.b"},
              {"alertname": "LatencyBudgetBurn", "service": "api", "path": "axb", "team": "ops", "job": "pbs-exporter"},
              {}]


def amtool_matches(matcher: str, labels: dict[str, str], tmp_path, strict: bool = False) -> bool:
    config = {"route": {"receiver": "no", "routes": [{"receiver": "yes", "matchers": [matcher]}]},
              "receivers": [{"name": "no"}, {"name": "yes"}]}
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={path}",
                             *(str(Matcher(k, "=", v)) for k, v in labels.items())],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # Alertmanager 0.27+ logs (on stdout) when its UTF-8 matchers parser refused the input and the
    # classic parser took it: the answer is the last line.
    fallback = "classic matchers parser as a fallback" in result.stdout
    assert not (fallback and strict), f"Alertmanager needed its classic parser for {matcher!r}: {result.stdout}"
    return result.stdout.strip().splitlines()[-1] == "yes"


@pytest.mark.parametrize("text", MATCHERS)
def test_written_matchers_route_in_alertmanager_as_they_match_here(text, tmp_path):
    matcher = parse_matcher(text)
    assert parse_matcher(str(matcher)) == matcher, "writing and reading back is lossless"
    for labels in LABEL_SETS:
        # What the stack writes, Alertmanager's UTF-8 parser reads (no fallback to the classic one).
        assert amtool_matches(str(matcher), labels, tmp_path, strict=True) == matcher.matches(labels), \
            (str(matcher), labels)
        assert amtool_matches(text, labels, tmp_path) == matcher.matches(labels), (text, labels)


def test_escapes_are_alertmanagers():
    assert parse_matcher(r'x="a\\b"').value == "a\\b"
    assert parse_matcher(r'x="line\nbreak"').value == "line\nbreak"
    assert parse_matcher(r'x=~"a\.b"').value == r"a\.b", "a spurious escape stays literal"


def alertmanager_reads(matcher: str, tmp_path) -> bool:
    """Whether Alertmanager's own (UTF-8) matcher parser reads `matcher` from a route, no fallback."""
    config = {"route": {"receiver": "no", "routes": [{"receiver": "yes", "matchers": [matcher]}]},
              "receivers": [{"name": "no"}, {"name": "yes"}]}
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and "classic matchers parser" not in result.stdout + result.stderr


@pytest.mark.parametrize("text", [
    "service == backups", "service = = backups", "service=back ups", "service=~a,b", "service=it's", "service={x}",
    "service!=~x", "service = backups", 'service="= backups"', "service=~backups.*", "job!=pbs-exporter", "team=",
])
def test_what_alertmanager_refuses_is_refused_here(text, tmp_path):
    """A matcher Alertmanager would only read with its deprecated classic parser, if at all, is a
    config error here: `service == backups` is not the value "= backups"."""
    try:
        parse_matcher(text)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == alertmanager_reads(text, tmp_path), text


def test_a_doubled_operator_names_what_was_meant():
    with pytest.raises(ValueError) as err:
        parse_matcher("service == backups")
    assert str(err.value) == ("unexpected '=' in the bare value of matcher 'service == backups' "
                              "(quote a value that holds it); did you mean 'service = \"backups\"'?")

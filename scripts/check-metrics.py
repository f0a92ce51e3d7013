#!/usr/bin/env python3
"""Parse a node_exporter textfile with the Prometheus client's own text parser
(prometheus_client.parser, PyPI) and print what it read as one JSON document:
[{"name", "type", "documentation", "samples": [{"name", "labels", "value"}]}].

The tests (tests/it/metrics.rs) run it with the harness venv's python, so the metrics file is
checked by an independent implementation of the format, not by the code that wrote it. A file
the parser refuses makes it exit 1 with the parser's message.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: check-metrics.py FILE", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        families = [
            {
                "name": fam.name,
                "type": fam.type,
                "documentation": fam.documentation,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": s.value}
                    for s in fam.samples
                ],
            }
            for fam in text_string_to_metric_families(text)
        ]
    except Exception as e:  # the parser raises ValueError and others on bad input
        print(f"check-metrics: {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

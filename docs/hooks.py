"""MkDocs hook: the command reference page is generated from the argparse parsers
(`sonic_bench.cli.reference`), so that no option is documented twice or goes missing."""

from __future__ import annotations

from sonic_bench.cli.reference import command_reference


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "reference.md":
        return command_reference()
    return markdown

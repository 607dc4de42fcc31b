"""Reading a page the way a browser follows it: its links and pictures (URLs unquoted), and its text."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (tag, URL) in page order: <img src>, <a href>
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "src" in a or "href" in a:
            self.links.append((tag, unquote(a.get("src") or a["href"])))

    def handle_data(self, data):
        self.text.append(data)

    def images(self) -> list[str]:
        return [url for tag, url in self.links if tag == "img"]


def read_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page

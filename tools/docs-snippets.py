#!/usr/bin/env python3
"""Pulls the C code blocks out of tern's Markdown, so that the tests can
compile and run them (tests/docs/run_snippets.py, ctest docs.snippets).

Every ```c block in README.md and docs/*.md must be preceded (blank lines
allowed in between) by a marker that says what it is:

  <!-- snippet: program STEPS -->   a whole program (it has main): compiled
                                    with -Wall -Wextra -Werror, started on a
                                    free port, talked to as STEPS say, stopped
                                    with SIGTERM; it must exit 0 within 5 s
  <!-- snippet: fragment -->        declarations and functions: compiled at
                                    file scope after #include <tern/tern.h>
  <!-- snippet: fragment body -->   statements: compiled inside a function
  <!-- snippet: excerpt PATH -->    lines quoted from PATH (relative to the
                                    repository): each line must occur in PATH,
                                    in the same order (leading and trailing
                                    blanks ignored); a line with "..." marks
                                    an elision and is not compared
  <!-- snippet: skip REASON -->     not checked; REASON is required

A marker may span several lines.
A ```c block without a marker, or a marker without its block, is an error:
new docs cannot slip by unchecked.

STEPS, in order, for a program (all optional):

  args="..."     argv after the program name, split on blanks; {port} is
                 the port the test picked (default: "{port}")
  send=STR       write STR on the current connection
  expect=STR     read until exactly STR has arrived (5 s at most)
  expect-close   the server closes the connection before sending anything
  connect        close the connection and open a new one
  output=STR     wait until the program's stdout or stderr contains STR
  sleep=MS       wait MS milliseconds

STR is a double-quoted string with C escapes (\\n \\r \\t \\\\ \\" \\xHH),
optionally repeated ("a"*5000) and joined with + ("a"*5000+"\\n").

As a program: `tools/docs-snippets.py` lists every block and its marker;
`tools/docs-snippets.py --extract DIR` writes each checked block as a .c
file in DIR. Exits 1 on a marker error.
"""
import argparse
import os
import re
import sys

PRELUDE = """\
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/tern.h>
"""

KINDS = ("program", "fragment", "excerpt", "skip")
MARKER_START_RE = re.compile(r"^\s*<!--\s*snippet:")
MARKER_RE = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$", re.S)
FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")


class SnippetError(Exception):
    pass


class Block:
    """One ```c block: where it is, its code, and its marker."""

    def __init__(self, path, line, code, marker, marker_line):
        self.path = path  # relative to the repository, e.g. docs/guide.md
        self.line = line  # line of the first code line (after the fence)
        self.code = code
        self.kind = None
        self.arg = ""  # fragment: "" or "body"; excerpt: PATH; skip: REASON
        self.steps = []  # program: [(op, value)]
        self.args = ["{port}"]
        if marker is None:
            raise SnippetError(
                f"{path}:{line - 1}: ```c block without a snippet marker "
                "(<!-- snippet: program|fragment|excerpt PATH|skip REASON --> "
                "before it; see tools/docs-snippets.py)")
        self._parse_marker(marker, marker_line)

    @property
    def name(self):
        stem = os.path.splitext(os.path.basename(self.path))[0]
        return f"{stem}-{self.line}"

    @property
    def where(self):
        return f"{self.path}:{self.line}"

    def _parse_marker(self, text, mline):
        kind, _, rest = text.partition(" ")
        rest = rest.strip()
        if kind not in KINDS:
            raise SnippetError(f"{self.path}:{mline}: unknown snippet kind '{kind}' "
                               f"(one of {', '.join(KINDS)})")
        self.kind = kind
        if kind == "skip":
            if not rest:
                raise SnippetError(f"{self.path}:{mline}: 'skip' needs a reason")
            self.arg = rest
        elif kind == "excerpt":
            if not rest or " " in rest:
                raise SnippetError(f"{self.path}:{mline}: 'excerpt' needs one PATH")
            self.arg = rest
        elif kind == "fragment":
            if rest not in ("", "body"):
                raise SnippetError(f"{self.path}:{mline}: 'fragment' takes nothing "
                                   f"or 'body', not '{rest}'")
            self.arg = rest
        else:
            self._parse_steps(rest, mline)
            if "main(" not in self.code:
                raise SnippetError(f"{self.where}: a 'program' with no main()")

    def _parse_steps(self, text, mline):
        pos = 0
        while True:
            pos = _skip_blanks(text, pos)
            if pos == len(text):
                return
            m = re.compile(r"(args|send|expect|output|sleep)=|(expect-close|connect)(?=\s|$)").match(
                text, pos)
            if not m:
                raise SnippetError(f"{self.path}:{mline}: bad step at '{text[pos:]}'")
            pos = m.end()
            if m.group(2):
                self.steps.append((m.group(2), None))
                continue
            op = m.group(1)
            if op == "sleep":
                n = re.compile(r"\d+").match(text, pos)
                if not n:
                    raise SnippetError(f"{self.path}:{mline}: sleep= needs milliseconds")
                self.steps.append(("sleep", int(n.group(0))))
                pos = n.end()
                continue
            value, pos = _parse_str(text, pos, f"{self.path}:{mline}")
            if op == "args":
                self.args = value.decode().split()
            else:
                self.steps.append((op, value))

    def translation_unit(self):
        """The C file to compile, with #line so that errors name the .md."""
        if self.kind == "program":
            return f'#line {self.line} "{self.path}"\n{self.code}'
        if self.kind == "fragment" and self.arg == "body":
            return (f"{PRELUDE}static void snippet(void)\n{{\n"
                    f'#line {self.line} "{self.path}"\n{self.code}}}\n')
        if self.kind == "fragment":
            return f'{PRELUDE}#line {self.line} "{self.path}"\n{self.code}'
        return None


def _skip_blanks(text, pos):
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_str(text, pos, where):
    """STR at text[pos:]: "..."[*N] joined by +. Returns (bytes, new pos)."""
    out = b""
    while True:
        if pos >= len(text) or text[pos] != '"':
            raise SnippetError(f'{where}: expected a "string" at \'{text[pos:]}\'')
        pos += 1
        part = bytearray()
        while True:
            if pos >= len(text):
                raise SnippetError(f"{where}: unterminated string")
            ch = text[pos]
            if ch == '"':
                pos += 1
                break
            if ch != "\\":
                part += ch.encode()
                pos += 1
                continue
            esc = text[pos + 1:pos + 2]
            simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", '"': b'"', "0": b"\0"}
            if esc in simple:
                part += simple[esc]
                pos += 2
            elif esc == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[pos + 2:pos + 4]):
                part.append(int(text[pos + 2:pos + 4], 16))
                pos += 4
            else:
                raise SnippetError(f"{where}: unknown escape '\\{esc}'")
        rep = re.compile(r"\*(\d+)").match(text, pos)
        if rep:
            part *= int(rep.group(1))
            pos = rep.end()
        out += bytes(part)
        if pos < len(text) and text[pos] == "+":
            pos += 1
            continue
        return out, pos


def markdown_files(root):
    docs = os.path.join(root, "docs")
    names = sorted(f for f in os.listdir(docs) if f.endswith(".md"))
    return ["README.md"] + [f"docs/{n}" for n in names]


def parse_file(root, rel):
    """(blocks, errors): every ```c block of one Markdown file."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, errors = [], []
    marker = None  # (text, line) of a marker waiting for its block
    i = 0
    while i < len(lines):
        fence = FENCE_RE.match(lines[i])
        if MARKER_START_RE.match(lines[i]):
            first = i
            while "-->" not in lines[i] and i + 1 < len(lines):
                i += 1  # a marker may span lines
            m = MARKER_RE.match(" ".join(lines[first:i + 1]))
            if marker:
                errors.append(f"{rel}:{marker[1]}: snippet marker not followed "
                              "by a ```c block")
            marker = (m.group(1), first + 1) if m else None
            if not m:
                errors.append(f"{rel}:{first + 1}: unterminated snippet marker")
        elif fence:
            indent, ticks, info = fence.groups()
            end = i + 1
            while end < len(lines) and not re.match(
                    rf"^\s*{re.escape(ticks[0])}{{{len(ticks)},}}\s*$", lines[end]):
                end += 1
            if info == "c":
                body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                        for ln in lines[i + 1:end]]
                try:
                    blocks.append(Block(rel, i + 2, "\n".join(body) + "\n",
                                        marker[0] if marker else None,
                                        marker[1] if marker else None))
                except SnippetError as e:
                    errors.append(str(e))
            elif marker:
                errors.append(f"{rel}:{marker[1]}: snippet marker before a "
                              f"```{info} block, not ```c")
            marker = None
            i = end
        elif marker and lines[i].strip():
            errors.append(f"{rel}:{marker[1]}: snippet marker not followed "
                          "by a ```c block")
            marker = None
        i += 1
    if marker:
        errors.append(f"{rel}:{marker[1]}: snippet marker at the end of the file")
    return blocks, errors


def collect(root):
    """(blocks, errors) over README.md and docs/*.md."""
    blocks, errors = [], []
    for rel in markdown_files(root):
        b, e = parse_file(root, rel)
        blocks += b
        errors += e
    return blocks, errors


def check_excerpt(root, block):
    """None if every line of @block occurs in its file in order, else why not."""
    try:
        with open(os.path.join(root, block.arg), encoding="utf-8") as f:
            source = [ln.strip() for ln in f.read().split("\n")]
    except OSError as e:
        return f"cannot read {block.arg}: {e.strerror}"
    at = 0
    for n, ln in enumerate(block.code.split("\n")):
        ln = ln.strip()
        if not ln or "..." in ln:
            continue
        try:
            at = source.index(ln, at) + 1
        except ValueError:
            where = "in order " if ln in source else ""
            return (f"{block.path}:{block.line + n}: not found {where}in "
                    f"{block.arg}: {ln}")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--extract", metavar="DIR", help="write each checked block as DIR/NAME.c")
    a = ap.parse_args()
    blocks, errors = collect(a.root)
    for b in blocks:
        detail = " ".join(b.args) if b.kind == "program" else b.arg
        print(f"{b.where}: {b.kind} {detail}".rstrip())
        tu = b.translation_unit()
        if a.extract and tu:
            os.makedirs(a.extract, exist_ok=True)
            with open(os.path.join(a.extract, b.name + ".c"), "w", encoding="utf-8") as f:
                f.write(tu)
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

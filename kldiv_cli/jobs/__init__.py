"""One module per command's job: a typed request in, a typed result out.

A job reads through :mod:`kldiv_cli.io`, computes with :mod:`kldiv_cli.core`, and
returns data; it never prints (see :mod:`kldiv_cli.render`) and never parses
command lines (see :mod:`kldiv_cli.cli`).
"""

"""Corpora shipped with charlm (see README.md in this folder for sources and licences)."""

"""The docs' numbers, written from the committed results (issue 29).

    python scripts/docs_blocks.py            # rewrite every generated block (make docs-numbers)
    python scripts/docs_blocks.py --check    # exit 1, naming each block that differs
    python scripts/docs_blocks.py --list     # the blocks and where they are

Every table, figure and finding the README and docs/ quote from ``results/`` sits between
``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` (:mod:`.markers`); :data:`.registry.BLOCKS`
maps each name to the function that writes it from the committed files (:mod:`.benchmarks`,
:mod:`.catalogue`, :mod:`.speed`). Findings ("A beats B") are written from ``paired.csv``
(:mod:`.findings`) and returned with the claims they state, which tests/test_findings.py
re-derives; tests/test_docs_blocks.py fails when a block differs from what this writes.
"""

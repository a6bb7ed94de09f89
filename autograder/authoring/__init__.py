"""The build: source notebooks → student release, published solutions, private references.

- source_rules.py    what a source notebook must follow (SourceError names notebook and cell)
- reference_code.py  `expected=` and the code that feeds it: run in the build only
- record.py          run the solution in a trusted kernel, record every check's reference
- pipeline.py        build_lab: the steps in order (nbgrader's GenerateAssignment for the release)
"""

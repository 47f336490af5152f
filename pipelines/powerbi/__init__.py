"""The Power BI Project (.pbip) written into each serving snapshot.

`project.write_project` writes a Power BI Desktop project whose semantic model (TMDL) is
generated from the snapshot's own star tables and data dictionary: tables and columns with
their types and descriptions, the relationships of each fact's keys to their dimensions,
one folder parameter, and measures for rates, gaps, intervals, SPC icons and suppression.
`tmdl.parse_model` is a strict parser for the TMDL the project emits; the project is parsed
and checked before it is written into a snapshot, so a model that does not parse never
reaches the serving folder.
"""

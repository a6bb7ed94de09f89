"""`autograder mutate`: how strong a lab's hidden tests are, measured by grading realistic bugs.

operators.py  the bug catalogue (AST edits of solution regions)
mutants.py    a lab's mutants: the catalogue's, the instructor's declared ones, declared equivalents
campaign.py   grade every mutant as a hidden student in a scratch course; killed / survived / equivalent
report.py     the table, the survivors in words, the rates, private/<lab>/mutation.json
"""

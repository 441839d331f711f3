"""Research probes, apart from the library: each folder holds a script, its stored results, a README whose command
reproduces them and, where a docs page shows them, a `block.py` whose `render()` `deepmath report` fills in."""

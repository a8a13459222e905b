"""The pieces of ``bench/harness/harness.py``: shared rows and tables, baserepo's methods, and each
alternative a user might pick instead, one module per database.

Every method has the same shape: ``async def method(target, rows) -> Outcome``. It gets the
generated rows as a list of dicts, already in memory, with its connection or session open;
what it times is everything from there until its commit has returned (building objects,
tuples or columns from the dicts included, because that is work the method makes its user do).
"""

"""What several benchmark scripts share beyond the harness's rows and tables
(``alternatives/data.py``): the guide's user model, one table per script."""

"""What several benchmark scripts share beyond the harness's rows and tables
(``alternatives/data.py``): the user model of docs/guide.md, one table per script."""

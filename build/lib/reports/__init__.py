"""Reports: the JSON evidence a data owner signs, rendered to HTML, CSV and PDF.

Arrives with the reports and sign-off issue.
"""

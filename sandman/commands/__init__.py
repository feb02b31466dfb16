"""sandman's commands: one module per command (or family), each a plain function over a Context.

cli.py parses options and renders results; the work of a command lives here and comes back as
results and errors (sandman.errors), the shape of pipx's commands/. These modules sit above
everything else in sandman and nothing below imports them: install, uninstall and upgrade
(install.py, upgrade.py), list, doctor and gc (status.py), bootstrap (bases.py), recipes list
and check (recipes.py), use, which and a project's install (pins.py), matrix, export and import
(bundle.py), push, pull and verify (publish.py, registry.py, signing.py), sbom, outdated.
"""

# The plugin packages here are installed by the tests that use them, not imported by collection
# (one of them fails to import on purpose).
collect_ignore = ["llmasos_demo_plugin"]

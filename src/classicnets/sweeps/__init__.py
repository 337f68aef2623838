"""`-m` sweeps: each job recorded and skippable (`jobs`), the machine shared among parallel jobs (`resources`), and
the comparison every sweep ends in (`report`)."""

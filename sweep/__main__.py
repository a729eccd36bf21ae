from sweep.cli import entry

if __name__ == "__main__":  # a guard: worker processes re-import this module
    entry()

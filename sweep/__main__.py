from sweep.cli.main import entry

if __name__ == "__main__":  # a guard: worker processes re-import this module
    entry()

from sweep.cli import main

if __name__ == "__main__":  # a guard: worker processes re-import this module
    main()

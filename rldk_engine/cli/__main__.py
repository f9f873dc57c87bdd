from rldk_engine.cli import main

main()

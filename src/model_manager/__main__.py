from model_manager.cli.main import main

main()

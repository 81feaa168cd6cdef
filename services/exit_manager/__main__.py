from services.exit_manager.service import main

main()

from services.position_engine.service import main

main()

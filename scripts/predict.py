"""Score new rows with a finished run: ``python scripts/predict.py RUN_DIR new.csv --times 30,90,365`` (= ``survopt-predict``)."""
from survopt_hydra.app.predict import main

main()

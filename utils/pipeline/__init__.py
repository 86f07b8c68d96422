"""The pipeline: decoding processes -> slots of gathered pixels -> preprocessing on the device ->
windows -> batches -> network -> one result per video."""

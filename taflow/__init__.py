"""TAflow: carries customs technical-assistance requests between ASEAN, ASEC and WCO ROCB A/P."""

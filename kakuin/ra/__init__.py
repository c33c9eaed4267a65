"""Registration authority: who may ask for what. Calls policy → va → ca and
records every decision."""

# One image for the web app, the workers and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WAREHOUSE_INI=/app/production.ini
WORKDIR /app
COPY setup.py README.md ./
COPY warehouse ./warehouse
COPY tasks ./tasks
COPY production.ini development.ini ./
# The flower extra too, so that the compose file's flower service runs the same image.
RUN pip install --no-cache-dir '.[flower]'

EXPOSE 6543
CMD ["sh", "-c", "initialize_warehouse_db production.ini && pserve production.ini"]

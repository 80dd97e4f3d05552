# A FastAPI service whose settings (pydantic-settings) come from .env when the module is
# imported, served by uvicorn.
from fastapi import FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env")

    database_url: str
    api_token: str


settings = Settings()
app = FastAPI()


@app.get("/health")
def health():
    return {"database": settings.database_url.split(":")[0], "token_set": bool(settings.api_token)}
